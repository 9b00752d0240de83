"""PII redaction on a labelled set: every valid entity is caught, no look-alike is touched.

The checksums used to build the labelled set are computed here independently of the module
under test, so a bug in its check digit code cannot make both sides agree.
"""

from __future__ import annotations

import random
from collections import Counter

import pytest
from kubetune.api import v1alpha1
from kubetune_trainer.data import pii

Entity = v1alpha1.PIIEntity
_RNG = random.Random(20240315)


# --- independent checksum implementations ---------------------------------------------------------


def id_check(first17: str) -> str:
    weights = [2 ** (17 - i) % 11 for i in range(17)]  # GB 11643: W_i = 2^(i-1) mod 11, from the right
    return "10X98765432"[sum(int(d) * w for d, w in zip(first17, weights, strict=True)) % 11]


def luhn_complete(partial: str) -> str:
    """Append the digit that makes ``partial`` Luhn-valid."""
    for check in "0123456789":
        digits = [int(c) for c in partial + check][::-1]
        total = sum(d if i % 2 == 0 else (d * 2 - 9 if d * 2 > 9 else d * 2) for i, d in enumerate(digits))
        if total % 10 == 0:
            return partial + check
    raise AssertionError


def luhn_ok(number: str) -> bool:
    return luhn_complete(number[:-1]) == number


def random_digits(count: int) -> str:
    return "".join(_RNG.choice("0123456789") for _ in range(count))


def valid_id(region: str, birth: str) -> str:
    first17 = f"{region}{birth}{random_digits(3)}"
    return first17 + id_check(first17)


def card(prefix: str, length: int) -> str:
    return luhn_complete(prefix + random_digits(length - len(prefix) - 1))


def group4(number: str) -> str:
    return " ".join(number[i : i + 4] for i in range(0, len(number), 4))


def bad_card(prefix: str, length: int) -> str:
    valid = card(prefix, length)
    return valid[:-1] + str((int(valid[-1]) + _RNG.randint(1, 9)) % 10)


# --- the labelled set ---------------------------------------------------------------------------

REGIONS = ["110101", "310104", "440305", "330106", "510107", "420106", "320102", "650102", "540102", "820000"]
BIRTHS = ["19491231", "19800101", "19900307", "20000229", "19751111", "20101010", "19620615", "19881008"]
VALID_IDS = ["11010519491231002X", valid_id("440524", "19300101")] + [
    valid_id(REGIONS[i % len(REGIONS)], BIRTHS[i % len(BIRTHS)]) for i in range(38)
]
MOBILES = [f"1{second}{random_digits(9)}" for second in "3456789" * 5]
CARDS = (
    [card("62", 16) for _ in range(10)]
    + [card("62", 19) for _ in range(8)]
    + [card("4", 16) for _ in range(6)]
    + [card("4", 13) for _ in range(2)]
    + [card("5", 16) for _ in range(6)]
    + [card("37", 15) for _ in range(3)]
    + [card("2221", 16), card("2720", 16), card("6011", 16)]
)
EMAILS = [
    "zhangwei@qq.com",
    "li.na@163.com",
    "wang_fang88@126.com",
    "john.smith@example.com",
    "a.b-c+tag@sub.example.co.uk",
    "chen.jie2020@outlook.com",
    "user123@gmail.com",
    "x@y.cn",
    "service.team@company-name.com.cn",
    "Amy_W@Example.ORG",
] * 2
IPV4 = ["192.168.1.1", "10.0.0.255", "8.8.8.8", "255.255.255.255", "0.0.0.0", "172.16.254.3", "1.2.3.4", "223.5.5.5"]
IPV6 = ["2001:db8::1", "fe80::1ff:fe23:4567:890a", "2001:0db8:85a3:0000:0000:8a2e:0370:7334"]

#: Sentences a value is written into, Chinese and English, with the value glued to CJK text or not.
ZH_FRAMES = ["我的{kind}是{v}", "{v}", "请联系{v}，谢谢", "号码：{v}。", "（{v}）"]
EN_FRAMES = ["my {kind} is {v}.", "{v}", "call {v} please", "value={v};", '"{v}"']


def grouped(number: str, sizes: list[int], separator: str) -> str:
    parts, start = [], 0
    for size in sizes:
        parts.append(number[start : start + size])
        start += size
    return separator.join(parts)


def mobile_variants(number: str, index: int) -> str:
    forms = [
        number,
        grouped(number, [3, 4, 4], " "),
        grouped(number, [3, 4, 4], "-"),
        f"+86 {number}",
        f"+86-{number}",
        f"+86{number}",
        f"0086 {number}",
        f"86{number}",
        f"+86 {grouped(number, [3, 4, 4], ' ')}",
    ]
    return forms[index % len(forms)]


def card_variants(number: str, index: int) -> str:
    if index % 3 == 1:
        return " ".join(number[i : i + 4] for i in range(0, len(number), 4))
    if index % 3 == 2:
        return "-".join(number[i : i + 4] for i in range(0, len(number), 4))
    return number


def build_positives() -> list[tuple[str, Entity, str]]:
    """(text, entity, value as written): at least one entity per text."""
    cases: list[tuple[str, Entity, str]] = []
    groups: list[tuple[Entity, list[str]]] = [
        (Entity.CN_ID_CARD, [v.lower() if i % 7 == 0 else v for i, v in enumerate(VALID_IDS)]),
        (Entity.CN_MOBILE, [mobile_variants(m, i) for i, m in enumerate(MOBILES)]),
        (Entity.BANK_CARD, [card_variants(c, i) for i, c in enumerate(CARDS)]),
        (Entity.EMAIL, EMAILS),
        (Entity.IP_ADDRESS, IPV4 * 3 + IPV6),
    ]
    for entity, values in groups:
        for index, value in enumerate(values):
            frames = ZH_FRAMES if index % 2 == 0 else EN_FRAMES
            frame = frames[index % len(frames)]
            cases.append((frame.format(kind=entity.value, v=value), entity, value))
    return cases


POSITIVES = build_positives()

#: Text that looks like PII but is not, and must come out unchanged.
LOOKALIKES = [
    # resident-ID shaped: wrong check character (and not Luhn-valid), impossible dates, unknown province
    *[
        f"参考编号{first17}{next(c for c in '0123456789X' if c != id_check(first17) and not luhn_ok(first17 + c))}"
        for first17 in (f"{REGIONS[i]}{BIRTHS[i % len(BIRTHS)]}{i:03d}" for i in range(10))
    ],
    "编号11010519901332123X",
    "编号110105199002301234",
    "编号991011199003071234",
    "编号110105180001011234",
    "出生于19900307，编号110105",
    # card shaped, failing Luhn
    *[f"卡号{bad_card('62', 16)}" for _ in range(6)],
    *[f"card {bad_card('4', 16)}" for _ in range(4)],
    *[f"卡号 {group4(bad_card('62', 19))}" for _ in range(3)],
    "流水号 1234 5678 9012 3456",
    # order, tracking, invoice and reference numbers
    "订单号DD20240315000123",
    "订单2024031512345678已发货",
    "订单号：202403150001",
    "order #240315098702 shipped",
    "运单号SF1234567890123",
    "快递单号YT4451669156401",
    "JD0012345678901",
    "发票号码01234567890123456789",
    "工单号10023456789",
    "ticket 12345678901",
    "ref 11223344556",
    "流水号9912345678901234567890",
    "SN2024A13812345678B",
    # numbers of the wrong length or glued to longer runs
    "1381234567",
    "138123456789",
    "138123456781",
    "01012345678",
    "400-820-8820",
    "010-62345678",
    "+1 415 555 0132",
    # amounts, decimals and quantities
    "金额¥1,299.00",
    "退款13812345678.50元",
    "共计 1380000 元",
    "$4,111,111.11",
    "价格 299元，优惠 30 元",
    "0.13812345678",
    # dates and times
    "2024-03-15",
    "2024年3月15日",
    "20240315",
    "20240315103000",
    "2024-03-15 10:30:00",
    "10:30:00",
    "时间 23:59",
    # not IP addresses
    "v1.2.3.4",
    "版本 1.2.3.4.5",
    "256.1.1.1",
    "192.168.1.256",
    "1.2.3",
    "3.14159",
    "01.02.03.04",
    "::",
    "a::b",
    "std::vector",
    "12:30:45",
    # not e-mail addresses
    "user@localhost",
    "@zhangwei 你好",
    "a@b",
    "邮箱是 zhang at qq dot com",
    "email: name[at]example.com",
]


# --- tests --------------------------------------------------------------------------------------


def test_the_labelled_set_is_large_enough() -> None:
    assert len(POSITIVES) + len(LOOKALIKES) >= 200
    assert {entity for _, entity, _ in POSITIVES} == set(Entity)


@pytest.mark.parametrize(
    ("text", "entity", "value"), POSITIVES, ids=[f"{e.value}-{i}" for i, (_, e, _) in enumerate(POSITIVES)]
)
def test_every_valid_entity_is_redacted(text: str, entity: Entity, value: str) -> None:
    redactor = pii.Redactor()
    out = redactor.redact(text)
    assert value not in out
    assert pii.PLACEHOLDERS[entity] in out
    assert redactor.counts == Counter({entity.value: 1})


def test_recall_is_complete_over_the_whole_set() -> None:
    redactor = pii.Redactor()
    missed = [text for text, _, value in POSITIVES if value in redactor.redact(text)]
    assert missed == []
    assert sum(redactor.counts.values()) == len(POSITIVES)
    assert redactor.counts == Counter(entity.value for _, entity, _ in POSITIVES)


@pytest.mark.parametrize("text", LOOKALIKES)
def test_lookalikes_are_left_alone(text: str) -> None:
    redactor = pii.Redactor()
    assert redactor.redact(text) == text
    assert not redactor.counts


def test_several_entities_in_one_text_keep_the_rest_intact() -> None:
    text = "订单DD20240315000123，手机13812345678，邮箱li.na@163.com，金额¥1,299.00，IP 10.1.2.3"
    redactor = pii.Redactor()
    assert redactor.redact(text) == "订单DD20240315000123，手机<CN_MOBILE>，邮箱<EMAIL>，金额¥1,299.00，IP <IP_ADDRESS>"
    assert redactor.counts == Counter({"cnMobile": 1, "email": 1, "ipAddress": 1})


def test_phones_inside_a_longer_number_run_are_found() -> None:
    redactor = pii.Redactor()
    assert redactor.redact("13812345678 13912345678") == "<CN_MOBILE> <CN_MOBILE>"
    assert redactor.redact("2024-03-15 138 1234 5678") == "2024-03-15 <CN_MOBILE>"
    assert redactor.redact("100 11010519491231002X") == "100 <CN_ID>"


def test_only_enabled_entities_are_redacted() -> None:
    redactor = pii.Redactor([Entity.EMAIL])
    assert redactor.redact("13812345678 li.na@163.com 11010519491231002X") == "13812345678 <EMAIL> 11010519491231002X"
    assert redactor.counts == Counter({"email": 1})


def test_a_disabled_entity_is_not_taken_for_another() -> None:
    valid = next(v for v in VALID_IDS if v[0] not in "3456" and v[-1] != "X")  # no card network prefix
    redactor = pii.Redactor([Entity.BANK_CARD, Entity.CN_MOBILE])
    assert redactor.redact(f"ID {valid}") == f"ID {valid}"


def test_find_reports_positions_without_counting() -> None:
    redactor = pii.Redactor()
    text = "call 13812345678 or mail x@y.cn"
    findings = redactor.find(text)
    assert [(f.entity, text[f.start : f.end]) for f in findings] == [
        (Entity.CN_MOBILE, "13812345678"),
        (Entity.EMAIL, "x@y.cn"),
    ]
    assert not redactor.counts


def test_checksum_helpers() -> None:
    assert pii.is_cn_id("11010519491231002X")
    assert pii.is_cn_id("11010519491231002x")
    assert not pii.is_cn_id("110105194912310021")
    assert not pii.is_cn_id("11010519491231002")
    assert not pii.is_cn_id("11010520491231002X")  # born in the future (checksum aside)
    assert pii.luhn_valid("4111111111111111")
    assert not pii.luhn_valid("4111111111111112")
    assert pii.is_bank_card("4111111111111111")
    assert not pii.is_bank_card("1111111111111117")  # Luhn-valid, no card network starts with 1
    assert pii.is_cn_mobile("19912345678")
    assert not pii.is_cn_mobile("12912345678")


def test_text_without_digits_or_at_sign_is_returned_as_is() -> None:
    text = "您好，请问有什么可以帮您？"
    assert pii.redact_text(text) is text
