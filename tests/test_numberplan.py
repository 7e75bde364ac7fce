"""Tests for recsvc.index.numberplan: the forms of a number a search looks for,
so that national and international forms find each other."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from recsvc.index.numberplan import NumberPlan, digits_of

GERMANY = NumberPlan("49", "0", "00")
ITALY = NumberPlan("39", None, "00")
NANP = NumberPlan("1", None, "011")

# A national significant number: an area code that does not begin with the
# trunk prefix, then the subscriber's digits.
significant = st.from_regex(r"[1-9][0-9]{3,10}", fullmatch=True)


def found(plan: NumberPlan, query: str, stored: str) -> bool:
    """Whether a search for ``query`` finds a number stored as ``stored``
    (as the index compares them: digits found anywhere)."""
    return any(form in digits_of(stored) for form in plan.forms(query))


class FormsTests(SynchronousTestCase):
    def test_without_a_country_code_digits_as_typed(self) -> None:
        """Without numbers.country_code the search is as it always was: the
        digits typed, nothing else."""
        plan = NumberPlan()
        for query in ("030 123", "+49 30 123", "0049-30-123", "123"):
            self.assertEqual(plan.forms(query), (digits_of(query),))

    def test_national_finds_international(self) -> None:
        """030 123 is also looked for as 4930123 (in +4930123... and
        004930123...)."""
        self.assertEqual(GERMANY.forms("030 123"), ("030123", "4930123"))

    def test_international_finds_national(self) -> None:
        """+49 30 123 and 0049 30 123 are also looked for as 030123."""
        self.assertEqual(GERMANY.forms("+49 30 123"), ("4930123", "030123"))
        self.assertEqual(GERMANY.forms(" +49 (30) 123"), ("4930123", "030123"))
        self.assertEqual(GERMANY.forms("0049 30 123"), ("4930123", "030123"))

    def test_trunk_prefix_in_brackets(self) -> None:
        """+49 (0)30 123, the trunk prefix kept in brackets as it is often
        written, is +49 30 123: looked for as 4930123 and 030123, not as
        49030123 (in no number stored without the (0)) and 0030123."""
        self.assertEqual(GERMANY.forms("+49 (0)30 123"), ("4930123", "030123"))
        self.assertEqual(GERMANY.forms("0049 (0)30 123"), ("4930123", "030123"))
        self.assertEqual(GERMANY.forms("+44 (0)20 7946"), ("440207946",))
        self.assertEqual(ITALY.forms("+39 06 6982"), ("39066982", "066982"))

    def test_other_countries_without_their_prefix(self) -> None:
        """Another country's number is looked for without the international
        prefix, so that +44... and 0044... find each other."""
        self.assertEqual(GERMANY.forms("0044 20 7946"), ("44207946",))
        self.assertEqual(GERMANY.forms("+44 20 7946"), ("44207946",))

    def test_fragments_and_bare_prefixes_as_typed(self) -> None:
        """Digits without a prefix are found inside either form as they are;
        a prefix alone is not widened into "every number"."""
        for query, forms in [("30 123", ("30123",)), ("0", ("0",)), ("+49", ("49",)),
                             ("00", ("00",)), ("+", ("",))]:
            self.assertEqual(GERMANY.forms(query), forms, query)

    def test_without_a_trunk_prefix(self) -> None:
        """Italy keeps the 0 after +39: the international form less its
        country code is the national number."""
        self.assertEqual(ITALY.forms("+39 06 6982"), ("39066982", "066982"))
        self.assertEqual(ITALY.forms("06 6982"), ("066982",))

    def test_another_international_prefix(self) -> None:
        """011 in North America, as numbers.international_prefix says."""
        self.assertEqual(NANP.forms("011 49 30 123"), ("4930123",))
        self.assertEqual(NANP.forms("+1 212 555 0100"), ("12125550100", "2125550100"))

    @given(significant,
           st.sampled_from(["0{}", "+49{}", "0049{}", "+49 {}", "0{} ", "+49 (0){}"]),
           st.sampled_from(["0{}", "+49{}", "0049{}", "49{}", "+49(0){}"]))
    def test_any_form_finds_any_other(self, number: str, typed: str, stored: str) -> None:
        """A number stored in any form of this country (030..., +4930...,
        004930..., 4930..., +49(0)30...) is found by a search in any form."""
        self.assertTrue(found(GERMANY, typed.format(number), stored.format(number)))

    @given(significant, significant)
    def test_not_found_what_differs(self, number: str, other: str) -> None:
        """The other forms find no number whose digits differ (as the digits
        typed would not)."""
        if number in other:
            return
        for typed in ("0" + number, "+49" + number):
            self.assertFalse(found(GERMANY, typed, "+49" + other))
            self.assertFalse(found(GERMANY, typed, "0" + other))


class WholeTests(SynchronousTestCase):
    def test_every_spelling_one_form(self) -> None:
        """A whole number's spellings are one form (what an erasure
        compares); another number, or a fragment, is another."""
        germany = NumberPlan("49", "0")
        self.assertEqual({germany.whole(text) for text in (
            "030 123", "+49 30 123", "0049 30 123", "+49 (0)30 123")}, {"4930123"})
        self.assertNotEqual(germany.whole("30123"), germany.whole("030123"))
        self.assertEqual(germany.whole("2001"), "2001")
        italy = NumberPlan("39")
        self.assertEqual({italy.whole(text) for text in ("06 123", "+39 06 123", "0039 06 123")},
                         {"3906123"})
        self.assertEqual(NumberPlan().whole("+86 138"), "86138")
        self.assertEqual(germany.whole(""), "")
