"""The National Provider Identifier's check digit. The one implementation: the rule
RENDERING_NPI_INVALID and the synthetic feeds' NPI generators both use it.

Source: CMS, "Requirements for National Provider Identifier (NPI) and NPI Check Digit" (the
specification the NPI final rule, 69 FR 3434 of 2004-01-23, points to; 45 CFR 162.406): the
10th digit is the Luhn "double-add-double" modulus 10 check digit (ISO/IEC 7812) computed as if
the NPI were preceded by the card issuer prefix 80840 (80 health applications, 840 the United
States). CMS's worked example: the 9-digit identifier 123456789 gets check digit 3.

Only the check digit is checked here: the final rule's "first digit 1 or 2" is an issuing
policy ("initially"), not part of the check, and a check digit cannot tell whether an NPI was
ever issued (NPPES can).
"""

from __future__ import annotations

from functools import lru_cache

#: Card issuer prefix the check digit is always computed with (CMS, as above).
NPI_PREFIX = "80840"

#: Luhn step 2 for a doubled digit: the digits of 2*d added (8 -> 16 -> 1 + 6 = 7).
_DOUBLED = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)


def npi_check_digit(first_nine: str) -> int:
    """The check digit of an NPI whose first nine digits are `first_nine`."""
    if len(first_nine) != 9 or not first_nine.isascii() or not first_nine.isdigit():
        raise ValueError("an NPI's identifier part is nine digits")
    total = 0
    # Luhn step 1: double alternate digits beginning with the rightmost one of the payload
    # (the check digit, not yet known, would sit to its right).
    for i, ch in enumerate(reversed(NPI_PREFIX + first_nine)):
        d = ord(ch) - 48
        total += _DOUBLED[d] if i % 2 == 0 else d
    # Step 3: subtract from the next number ending in zero (0 when the total ends in zero).
    return (10 - total % 10) % 10


def with_check_digit(first_nine: str) -> str:
    """The full 10-digit NPI for nine identifier digits (the synthetic feeds' generators)."""
    return first_nine + str(npi_check_digit(first_nine))


@lru_cache(maxsize=4096)
def npi_valid(npi: str) -> bool:
    """True when `npi` is ten digits whose last is the check digit of the first nine.
    Cached: a feed has few distinct rendering NPIs, and this runs once per visit."""
    if len(npi) != 10 or not npi.isascii() or not npi.isdigit():
        return False
    return npi_check_digit(npi[:9]) == ord(npi[9]) - 48
