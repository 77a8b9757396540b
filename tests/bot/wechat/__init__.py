"""Tests for bot/wechat."""
