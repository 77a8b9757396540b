"""Tests for scheduler."""
