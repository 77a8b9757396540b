"""The loyalty-programme WeChat official-account service."""
