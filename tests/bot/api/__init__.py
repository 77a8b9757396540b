"""Tests for bot/api."""
