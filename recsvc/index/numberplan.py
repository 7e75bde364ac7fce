"""How the national and international forms of a phone number relate
(config ``numbers``), so that a search for one finds the other: with
country code 49 and trunk prefix 0, ``030 123`` is also ``+49 30 123``
(``0049 30 123``), and the other way round. Pure."""

from __future__ import annotations

import re

import attrs

_NOT_DIGITS = re.compile(r"\D")


def digits_of(text: str) -> str:
    """The digits of a number as written (spaces, dashes, "+" dropped)."""
    return _NOT_DIGITS.sub("", text)


@attrs.frozen
class NumberPlan:
    """The phones' own country's numbering: its country code (None: search
    numbers as typed), the trunk prefix a national number begins with (None:
    none, as in Italy) and what is dialled instead of "+" (00, 011...)."""

    country_code: str | None = None
    trunk_prefix: str | None = None
    international_prefix: str = "00"

    def forms(self, query: str) -> tuple[str, ...]:
        """The digits to look for, any of them, for a number as typed: its
        digits, and with a country code, its other form. An international
        number of this country (``+49 30 123``, ``0049 30 123``) is also
        looked for nationally (``030123``) and as ``4930123`` (which is in
        ``+4930123`` and in ``004930123`` alike); a national one
        (``030 123``) also as ``4930123``; another country's number without
        its international prefix. A fragment without a prefix (``30 123``)
        is found inside either form as it is."""
        digits = digits_of(query)
        if self.country_code is None:
            return (digits,)
        trunk = self.trunk_prefix or ""
        international = self._international(query)
        if international is None:
            if trunk and digits.startswith(trunk) and len(digits) > len(trunk):
                return (digits, self.country_code + digits[len(trunk):])
            return (digits,)
        if not international:
            return (digits,)
        national = international[len(self.country_code):]
        if not (international.startswith(self.country_code) and national):
            return (international,)
        if trunk and national.startswith(trunk) and len(national) > len(trunk):
            # "+49 (0)30 123": the trunk prefix kept in brackets, as it is
            # often written; a national significant number never begins
            # with it.
            national = national[len(trunk):]
        return _distinct(self.country_code + national, trunk + national)


    def whole(self, number: str) -> str:
        """A whole number in one form, so that two spellings of one number
        are equal (an erasure compares numbers so, never as fragments): its
        digits without a country code; with one, the international form
        without its prefix (``+49 30 123``, ``0049 30 123``, ``+49 (0)30
        123`` and ``030 123`` are all ``4930123``). A national number
        without the trunk prefix where there is one (an extension, a
        number without its area code) stays as it is."""
        digits = digits_of(number)
        if self.country_code is None or not digits:
            return digits
        trunk = self.trunk_prefix or ""
        international = self._international(number)
        if international is None:
            if not trunk:
                return self.country_code + digits  # (as in Italy: the number whole)
            if digits.startswith(trunk):
                return self.country_code + digits[len(trunk):]
            return digits
        national = international[len(self.country_code):]
        if international.startswith(self.country_code) and trunk and \
                national.startswith(trunk) and len(national) > len(trunk):
            return self.country_code + national[len(trunk):]  # ("+49 (0)30 123")
        return international


    def _international(self, number: str) -> str | None:
        """The digits after the international prefix ("+" or what is
        dialled for it) of a number written with one; None if none."""
        digits = digits_of(number)
        if number.lstrip().startswith("+"):
            return digits
        if digits.startswith(self.international_prefix):
            return digits[len(self.international_prefix):]
        return None


def _distinct(*forms: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(forms))
