"""The console routes of cases and service figures, and who may use them (issue 20, items 2
and 6): test_console.py's route table includes them; test_cases.py exercises each."""

from __future__ import annotations

CASE_ROUTES = {
    ("GET", "/console/cases"): ("agent", "admin"),
    ("POST", "/console/cases"): ("agent", "admin"),
    ("GET", "/console/cases/{id}"): ("agent", "admin"),
    ("POST", "/console/cases/{id}/write"): ("agent", "admin"),
    ("POST", "/console/cases/{id}/update"): ("agent", "admin"),
    ("POST", "/console/cases/{id}/take"): ("agent", "admin"),
    ("POST", "/console/cases/{id}/close"): ("agent", "admin"),
    ("POST", "/console/cases/{id}/reopen"): ("agent", "admin"),
    ("GET", "/console/reports/service"): ("agent", "marketer", "admin"),
}
