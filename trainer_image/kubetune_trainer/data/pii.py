"""PII redaction: replace personal data with typed placeholders before anything learns from it.

Customer-service logs are full of phone numbers, ID numbers and bank cards, and just as full of
numbers that only look like them: order numbers, tracking numbers, amounts, dates. Redacting
every long digit run would wreck the data a model must learn to talk about ("your order
202403150001 ships tomorrow"), and missing a real ID number leaks it into the weights. So each
entity is verified, not just pattern-matched:

* ``cnIdCard`` - 18-character resident ID (GB 11643-1999): known province prefix, a real birth
  date between 1900 and this year, and the ISO 7064 MOD 11-2 check character.
* ``cnMobile`` - 11 digits ``1[3-9]xxxxxxxxx``, optionally ``+86``/``0086``/``86``-prefixed and
  grouped by spaces or dashes (``138 1234 5678``).
* ``bankCard`` - 13 to 19 digits, optionally grouped, with a card-network prefix (2221-2720, 3, 4,
  5, 6) and a valid Luhn check digit.
* ``email`` - ``local@domain.tld``.
* ``ipAddress`` - IPv4 with octets 0-255 (not part of a longer dotted run such as a version
  string); IPv6 validated by :mod:`ipaddress`.

Numbers glued to letters (``DD20240315...``, ``SF1234...``) or to other digits are identifiers of
another kind and are left alone, as are decimals (``13812345678.50``).

Speed matters (the prepare step scans every text of every record), so the scan is one pass of a
single compiled alternation: a cheap pre-filter skips texts without a digit or ``@``; a token
pattern of the characters entities are made of skips the rest (Chinese text) at C speed, and the
alternation only runs on tokens holding a digit or ``@``; the email and IPv6 branches are only
compiled into the pattern used for tokens containing ``@`` or ``:``; all digit candidates are one
"digit run" branch, and checksums run only on those candidates.
A digit run that is not PII as a whole (two phone numbers separated by a space, a date followed
by a phone number) is split at its separators, and pieces shaped like a phone or an ID number
(one piece, 3-4-4 or 6-8-4 groups) are checked on their own. A card is only recognised as a whole
run: sub-windows of a long card-like number would pass Luhn one time in ten by chance. An
18-digit number with a wrong ID check character that passes Luhn with a card prefix is redacted
as a bank card, since it may be one.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from kubetune.api import v1alpha1

Entity = v1alpha1.PIIEntity

#: Placeholder written in place of each entity.
PLACEHOLDERS: dict[v1alpha1.PIIEntity, str] = {
    Entity.CN_ID_CARD: "<CN_ID>",
    Entity.CN_MOBILE: "<CN_MOBILE>",
    Entity.EMAIL: "<EMAIL>",
    Entity.BANK_CARD: "<BANK_CARD>",
    Entity.IP_ADDRESS: "<IP_ADDRESS>",
}

# --- candidate patterns -------------------------------------------------------------------------

_EMAIL = (
    r"(?P<email>(?<![A-Za-z0-9._%+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@"
    r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,24})"
    r"(?![A-Za-z0-9-])"
)
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = rf"(?P<ipv4>(?<![0-9A-Za-z.]){_OCTET}(?:\.{_OCTET}){{3}})(?![0-9A-Za-z]|\.\d)"
_IPV6 = r"(?P<ipv6>(?<![0-9A-Za-z:])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7})(?![0-9A-Za-z:]|\.\d)"
# A run of at least 11 digits, single spaces or dashes allowed between digits, optional +/00
# country prefix and a trailing X (ID check character); not glued to letters, digits or decimals.
_DIGIT_RUN = r"(?P<run>(?<![0-9A-Za-z])(?<!\d\.)(?:\+|00)?\d(?:[ -]?\d){10,}[Xx]?)(?![0-9A-Za-z]|\.\d)"

_HAS_CANDIDATE = re.compile(r"[\d@]")
# Every character an entity, or the context its pattern looks at around it, can contain. Text
# between such tokens (CJK, other punctuation) is skipped at C speed, and each token is matched
# on its own with the same result as matching the whole text.
_TOKEN = re.compile(r"[0-9A-Za-z+:.@_%\- ]+")
_SEPARATORS = re.compile(r"[ -]")


def _compile(email: bool, ipv6: bool) -> re.Pattern[str]:
    branches = ([_EMAIL] if email else []) + [_IPV4] + ([_IPV6] if ipv6 else []) + [_DIGIT_RUN]
    return re.compile("|".join(branches))


#: Patterns by (text has "@", text has ":"): the email and IPv6 branches only where they can match.
_PATTERNS = {(email, ipv6): _compile(email, ipv6) for email in (False, True) for ipv6 in (False, True)}

# --- verification -------------------------------------------------------------------------------

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK_CODES = "10X98765432"
#: First two digits of resident IDs: provinces, plus 71/81/82/83/91 (Taiwan, Hong Kong, Macau residents, abroad).
_ID_PROVINCES = frozenset(
    {11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46, 50, 51, 52, 53, 54}
    | {61, 62, 63, 64, 65, 71, 81, 82, 83, 91}
)
_MOBILE_SECOND_DIGITS = frozenset("3456789")
_LUHN_DOUBLED = tuple((2 * d) - 9 if d > 4 else 2 * d for d in range(10))


def id_check_char(first17: str) -> str:
    """The GB 11643 check character for the first 17 digits of a resident ID."""
    total = sum(int(digit) * weight for digit, weight in zip(first17, _ID_WEIGHTS, strict=True))
    return _ID_CHECK_CODES[total % 11]


def is_cn_id(value: str, today: datetime.date | None = None) -> bool:
    """Whether ``value`` is a plausible 18-character resident ID (province, birth date, checksum).

    Args:
        value: 18 characters, the last one a digit or X.
        today: upper bound of the birth date (default: today).

    Returns:
        True when every check passes.
    """
    if len(value) != 18 or not value[:17].isdigit() or value[17] not in "0123456789Xx":
        return False
    if int(value[:2]) not in _ID_PROVINCES:
        return False
    year, month, day = int(value[6:10]), int(value[10:12]), int(value[12:14])
    try:
        birth = datetime.date(year, month, day)
    except ValueError:
        return False
    if not datetime.date(1900, 1, 1) <= birth <= (today or datetime.date.today()):
        return False
    return id_check_char(value[:17]) == value[17].upper()


def is_cn_mobile(digits: str) -> bool:
    """Whether 11 digits are a mainland mobile number (``1[3-9]`` + 9 digits)."""
    return len(digits) == 11 and digits[0] == "1" and digits[1] in _MOBILE_SECOND_DIGITS and digits.isdigit()


def luhn_valid(digits: str) -> bool:
    """Whether a digit string passes the Luhn (mod 10) check."""
    total = sum(ord(c) - 48 for c in digits[-1::-2]) + sum(_LUHN_DOUBLED[ord(c) - 48] for c in digits[-2::-2])
    return total % 10 == 0


def is_bank_card(digits: str) -> bool:
    """Whether 13-19 digits look like a payment card: network prefix and Luhn check."""
    if not 13 <= len(digits) <= 19 or not digits.isdigit():
        return False
    if digits[0] not in "3456" and not 2221 <= int(digits[:4]) <= 2720:
        return False
    return luhn_valid(digits)


def _is_ipv6(candidate: str) -> bool:
    """A valid IPv6 address with at least two non-empty groups and four hex digits (not ``::`` or ``a::b``)."""
    groups = [group for group in candidate.split(":") if group]
    if len(groups) < 2 or sum(len(group) for group in groups) < 4:
        return False
    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class Finding:
    """One redacted entity: its kind and where it was in the original text."""

    entity: v1alpha1.PIIEntity
    start: int
    end: int


class Redactor:
    """Redacts the enabled entities and counts what it replaced.

    Example:
        >>> redactor = Redactor()
        >>> redactor.redact("call 13812345678")
        'call <CN_MOBILE>'
        >>> dict(redactor.counts)
        {'cnMobile': 1}
    """

    def __init__(self, entities: Iterable[v1alpha1.PIIEntity] = tuple(Entity)) -> None:
        """Create a redactor.

        Args:
            entities: the entities to redact (``PIIRedactionSpec.entities``).
        """
        self.entities = frozenset(Entity(entity) for entity in entities)
        self.counts: Counter[str] = Counter()
        self._findings: list[Finding] | None = None
        self._offset = 0

    def redact(self, text: str) -> str:
        """Return ``text`` with every enabled entity replaced by its placeholder."""
        if not _HAS_CANDIDATE.search(text):
            return text
        out: list[str] = []
        done = 0
        for token in _TOKEN.finditer(text):
            value = token.group()
            if not _HAS_CANDIDATE.search(value):
                continue
            pattern = _PATTERNS[("@" in value and Entity.EMAIL in self.entities, ":" in value)]
            self._offset = token.start()
            redacted = pattern.sub(self._replace, value)
            if redacted != value:
                out.append(text[done : token.start()])
                out.append(redacted)
                done = token.end()
        if not out:
            return text
        out.append(text[done:])
        return "".join(out)

    def find(self, text: str) -> list[Finding]:
        """The entities :meth:`redact` would replace, with their positions (counts are not changed)."""
        saved = self.counts.copy()
        self._findings = []
        try:
            self.redact(text)
            return self._findings
        finally:
            self._findings = None
            self.counts = saved

    def _replace(self, match: re.Match[str]) -> str:
        kind, value = match.lastgroup, match.group()
        entity: v1alpha1.PIIEntity | None = None
        if kind == "run":
            return self._replace_run(value, self._offset + match.start())
        if kind == "email":
            entity = Entity.EMAIL
        elif kind == "ipv4" or (kind == "ipv6" and _is_ipv6(value)):
            entity = Entity.IP_ADDRESS
        if entity is None or entity not in self.entities:
            return value
        return self._record(entity, self._offset + match.start(), self._offset + match.end())

    def _record(self, entity: v1alpha1.PIIEntity, start: int, end: int) -> str:
        self.counts[entity.value] += 1
        if self._findings is not None:
            self._findings.append(Finding(entity, start, end))
        return PLACEHOLDERS[entity]

    def _classify(self, window: str, cards: bool = True) -> v1alpha1.PIIEntity | None:
        """The entity a digit window is, if any (separators allowed inside)."""
        digits = _SEPARATORS.sub("", window) if (" " in window or "-" in window) else window
        for prefix in ("+86", "0086", "86"):
            if digits.startswith(prefix) and is_cn_mobile(digits[len(prefix) :]):
                return Entity.CN_MOBILE if Entity.CN_MOBILE in self.entities else None
        if digits[0] == "+":  # another country's number: not a format this redactor knows
            return None
        found: v1alpha1.PIIEntity | None = None
        if len(digits) == 18 and is_cn_id(digits):
            found = Entity.CN_ID_CARD
        elif is_cn_mobile(digits):
            found = Entity.CN_MOBILE
        elif cards and is_bank_card(digits):
            found = Entity.BANK_CARD
        return found if found in self.entities else None

    def _replace_run(self, run: str, offset: int) -> str:
        """Redact a digit run as a whole, or else the phone and ID numbers written inside it."""
        entity = self._classify(run)
        if entity is not None:
            return self._record(entity, offset, offset + len(run))
        pieces = [(m.start(), m.end()) for m in _PIECE.finditer(run)]
        if len(pieces) == 1:
            return run
        out, cursor, i = [], 0, 0
        while i < len(pieces):
            for j in _window_ends(run, pieces, i):
                start, end = pieces[i][0], pieces[j - 1][1]
                entity = self._classify(run[start:end], cards=False)
                if entity is not None:
                    out.append(run[cursor:start])
                    out.append(self._record(entity, offset + start, offset + end))
                    cursor, i = end, j
                    break
            else:
                i += 1
        out.append(run[cursor:])
        return "".join(out)


_PIECE = re.compile(r"[^ -]+")
_COUNTRY_PREFIXES = frozenset(("+86", "86", "0086"))


def _window_ends(run: str, pieces: list[tuple[int, int]], i: int) -> list[int]:
    """Ends of the windows starting at piece ``i`` that are shaped like a phone or an ID, longest first.

    Inside a longer run only these shapes are tried: one piece on its own, a phone grouped
    3-4-4 (optionally after a +86 piece), an ID grouped 6-8-4. Cards are only recognised as a
    whole run, since windows of a card-like number would find Luhn-valid sub-numbers by chance.
    """
    sizes = [end - start for start, end in pieces[i : i + 4]]
    ends = []
    if run[pieces[i][0] : pieces[i][1]] in _COUNTRY_PREFIXES:
        if sizes[1:4] == [3, 4, 4]:
            ends.append(i + 4)
        if sizes[1:2] == [11]:
            ends.append(i + 2)
    if sizes[:3] in ([3, 4, 4], [6, 8, 4]):
        ends.append(i + 3)
    ends.append(i + 1)
    return ends


def redact_text(text: str, entities: Iterable[v1alpha1.PIIEntity] = tuple(Entity)) -> str:
    """Redact one text with a throw-away :class:`Redactor` (convenient for one-off use)."""
    return Redactor(entities).redact(text)
