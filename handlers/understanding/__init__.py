"""Understanding members in their own words: from a message's text to an intent, its slots and
a confidence (see ``pipeline``). The labelled corpus it learns from lives in ``corpus/``.
May import models only (besides its own modules and third-party libraries)."""
