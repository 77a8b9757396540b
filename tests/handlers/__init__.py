"""Tests for handlers."""
