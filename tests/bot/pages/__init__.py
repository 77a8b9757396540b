"""Tests for bot/pages."""
