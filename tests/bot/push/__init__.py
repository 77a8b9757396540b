"""Tests for bot/push."""
