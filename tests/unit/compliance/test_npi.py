"""The NPI check digit (compliance/npi.py) against published NPIs.

Sources of the values (each an independent publication of the algorithm's result):
- CMS, "Requirements for National Provider Identifier (NPI) and NPI Check Digit": worked
  example, identifier part 123456789 -> check digit 3 (both with the 80840 prefix and with the
  constant 24 that stands for it), so 1234567893 is valid and 1234567890 is not.
- npiprofile.com "NPI Validation Tool": worked example 1134296023 (total 57 -> 3).
- geekbacon.com "Validating NPI" (2013-01-15): worked example 1295723567 (total 63 -> 7).
- John D. Cook, "National Provider Identifier (NPI) and its checksum" (2024-06-26): 1993999998,
  "a valid NPI format because the Luhn checksum of 80840199399999 is 8".
An NPI whose last digit differs from a published check digit is invalid (one check digit per
identifier part): 1134296024, 1295723560, 1993999990.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from compliance.npi import npi_check_digit, npi_valid, with_check_digit

PUBLISHED_VALID = ["1234567893", "1134296023", "1295723567", "1993999998"]
#: 1234567893 in full-width digits: str.isdigit() accepts them, an NPI does not.
FULL_WIDTH_CMS_EXAMPLE = "".join(chr(0xFF10 + int(d)) for d in "1234567893")
PUBLISHED_INVALID = ["1234567890", "1134296024", "1295723560", "1993999990"]


def test_cms_worked_example() -> None:
    assert npi_check_digit("123456789") == 3
    assert with_check_digit("123456789") == "1234567893"


@pytest.mark.parametrize("npi", PUBLISHED_VALID)
def test_published_valid_npis(npi: str) -> None:
    assert npi_valid(npi)
    assert npi_check_digit(npi[:9]) == int(npi[9])


@pytest.mark.parametrize("npi", PUBLISHED_INVALID)
def test_published_npis_with_another_last_digit_are_invalid(npi: str) -> None:
    assert not npi_valid(npi)


@pytest.mark.parametrize(
    "text", ["", "123456789", "12345678930", "123456789a", FULL_WIDTH_CMS_EXAMPLE]
)
def test_not_ten_ascii_digits_is_invalid(text: str) -> None:
    assert not npi_valid(text)


def cms_without_prefix(nine: str) -> int:
    """CMS's second example, written out as the document words it: double alternate digits
    from the rightmost, add the digits of the products and the unaffected digits, add the
    constant 24 (the 80840 prefix), subtract from the next number ending in zero."""
    total = 24
    for pos, ch in enumerate(reversed(nine)):
        d = int(ch)
        if pos % 2 == 0:
            total += sum(int(x) for x in str(d * 2))
        else:
            total += d
    return -total % 10


@given(st.text("0123456789", min_size=9, max_size=9))
def test_check_digit_equals_the_constant_24_formulation(nine: str) -> None:
    assert npi_check_digit(nine) == cms_without_prefix(nine)
    valid = [d for d in "0123456789" if npi_valid(nine + d)]
    assert valid == [str(cms_without_prefix(nine))]  # exactly one check digit per identifier
