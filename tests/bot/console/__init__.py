"""Tests for bot/console."""
