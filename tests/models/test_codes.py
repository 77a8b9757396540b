"""Random codes: the right length, only unambiguous characters, every character equally likely."""

from __future__ import annotations

from collections import Counter

from models.codes import ALPHABET, random_code


def test_codes_have_the_length_asked_and_only_unambiguous_characters() -> None:
    for length in (1, 8, 10, 12, 40):
        codes = [random_code(length) for _ in range(200)]
        assert {len(code) for code in codes} == {length}
        assert set("".join(codes)) <= set(ALPHABET)
    assert not set("01OIL") & set(ALPHABET)


def test_every_character_is_about_equally_likely() -> None:
    """31 characters from bytes: a plain ``byte % 31`` would give the first eight 9/256 each
    and the rest 8/256 (12% more); a million characters put a fair draw's spread near 2%."""
    counts = Counter("".join(random_code(10) for _ in range(100_000)))
    assert set(counts) == set(ALPHABET)
    assert max(counts.values()) / min(counts.values()) < 1.06
