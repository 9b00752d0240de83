"""Synthetic customer-service dialogues with known flaws, for the quickstart, tests and benchmarks.

Real support logs cannot ship with an open-source project (they are full of personal data),
yet the prepare step is only convincing on data that has what real logs have. This generator
writes ``triple`` records (``context``, ``response``, ``followup``, ``intent``) in Chinese and
some English, and plants, at known rates:

* personal data the redactor must catch: checksum-valid resident IDs, mobile numbers (plain,
  grouped, +86), e-mail addresses, Luhn-valid bank cards (plain and grouped), IPv4 addresses;
* look-alikes it must leave alone: order and tracking numbers, amounts, dates, 18-digit
  numbers with a wrong ID check character, card-like numbers failing Luhn, 11-digit ticket
  numbers that are not mobiles;
* exact duplicates (also differing only in case or spacing), near duplicates (a word added at
  the end, punctuation changed: 5-gram Jaccard similarity above 0.9), and junk (empty or blank
  responses, repeated characters, echoed context, symbol soup, control characters);
* an imbalanced intent distribution (order_status is common, complaint rare).

Everything is drawn from one seeded :class:`random.Random`: the same seed gives the same file.
:func:`generate_labelled` also returns what was planted in each record, for tests.

Usage: ``python -m kubetune_trainer.data.synthetic --records 1500 --output data.jsonl --seed 7``
"""

from __future__ import annotations

import argparse
import datetime
import json
import random
import string
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubetune_trainer import fsutil
from kubetune_trainer.data import pii

#: Intent -> relative frequency.
INTENT_WEIGHTS: dict[str, float] = {
    "order_status": 0.22,
    "shipping": 0.16,
    "refund": 0.14,
    "return_exchange": 0.10,
    "account": 0.10,
    "payment": 0.10,
    "product_info": 0.10,
    "complaint": 0.08,
}
ENGLISH_SHARE = 0.2
PII_RATE = 0.3
LOOKALIKE_RATE = 0.25
EXACT_DUPLICATE_RATE = 0.04
NEAR_DUPLICATE_RATE = 0.04
JUNK_RATE = 0.04

# --- text banks -----------------------------------------------------------------------------------

_ZH_OPENERS = ["", "", "您好，", "你好，", "在吗？", "客服你好，", "麻烦问一下，", "打扰了，", "急！", "请问，"]
_ZH_ACKS = [
    "",
    "您好，",
    "亲，您好！",
    "感谢您的耐心等待，",
    "您好，这边帮您查询了一下，",
    "非常理解您的心情，",
    "收到，",
    "好的，",
]
_ZH_CLOSINGS = [
    "",
    "",
    "还有其他可以帮您的吗？",
    "祝您生活愉快！",
    "如有疑问欢迎随时联系我们。",
    "感谢您的理解与支持。",
    "给您带来不便，敬请谅解。",
    "请问还有什么需要帮助的吗？",
]
_EN_OPENERS = ["", "", "Hi, ", "Hello, ", "Hey there, ", "Good morning, ", "Quick question: "]
_EN_ACKS = ["", "Hi, ", "Thanks for reaching out! ", "Sorry for the wait. ", "Happy to help. ", "I checked for you: "]
_EN_CLOSINGS = [
    "",
    "",
    " Anything else I can help with?",
    " Have a great day!",
    " Thanks for your patience.",
    " Let us know if you have more questions.",
]

_ZH_PRODUCTS = [
    "无线蓝牙耳机",
    "扫地机器人",
    "电动牙刷",
    "羽绒服",
    "空气炸锅",
    "机械键盘",
    "儿童安全座椅",
    "保温杯",
    "智能手表",
    "运动跑鞋",
    "床上四件套",
    "咖啡机",
    "移动电源",
    "护眼台灯",
    "行李箱",
]
_EN_PRODUCTS = [
    "wireless earbuds",
    "robot vacuum",
    "electric toothbrush",
    "down jacket",
    "air fryer",
    "mechanical keyboard",
    "smart watch",
    "running shoes",
    "coffee maker",
    "power bank",
]

# Templates use {order} {tracking} {amount} {date} {days} {product} {ticket} slots.
_ZH: dict[str, dict[str, list[str]]] = {
    "order_status": {
        "q": [
            "我的订单{order}现在是什么状态？",
            "请问订单{order}什么时候发货？",
            "订单{order}已经下单{days}天了还没动静，帮我查一下",
            "我在{date}买的{product}，订单号{order}，怎么还显示待发货？",
            "查一下订单{order}的进度，谢谢",
            "订单{order}显示已出库，但物流一直没有更新",
            "我想确认一下订单{order}有没有下单成功",
        ],
        "a": [
            "您的订单{order}已于{date}发货，预计{days}天内送达。",
            "订单{order}目前在仓库打包中，预计今天内发出。",
            "查询到订单{order}已出库，物流单号{tracking}，您可以在快递官网跟踪。",
            "订单{order}因{product}库存调配稍有延迟，预计{days}天内发货。",
            "订单{order}显示已于{date}签收，如果您没有收到请告诉我们，我们马上核实。",
            "订单{order}已付款成功，金额{amount}，正在等待仓库处理。",
        ],
        "f": [
            "好的，那我再等等。",
            "能不能帮我催一下？",
            "物流单号是多少？",
            "明白了，谢谢。",
            "如果明天还没到怎么办？",
        ],
    },
    "shipping": {
        "q": [
            "快递{tracking}好几天没更新了，是不是丢件了？",
            "我的{product}到哪了？物流单号{tracking}",
            "能不能改一下收货地址？订单{order}还没发货",
            "你们发什么快递？{days}天能到吗？",
            "快递显示派送中但是一直没送到，单号{tracking}",
            "偏远地区包邮吗？我买的是{product}",
        ],
        "a": [
            "已为您联系快递公司核实单号{tracking}，预计{days}天内给您回复。",
            "您的包裹目前在转运中心，预计{date}送达。",
            "订单{order}尚未发货，收货地址可以修改，请在订单详情页操作。",
            "我们默认发顺丰和中通，一般{days}天左右送达。",
            "已催促派送员尽快派送单号{tracking}，请保持电话畅通。",
            "满{amount}全国包邮，偏远地区需补运费。",
        ],
        "f": ["麻烦尽快处理。", "那我今天在家等着。", "好的，改好了。", "偏远地区运费多少？", "谢谢。"],
    },
    "refund": {
        "q": [
            "我要退款，订单{order}的{product}有质量问题",
            "退款{amount}申请了{days}天了还没到账",
            "订单{order}取消了，钱什么时候退回来？",
            "{product}收到就坏了，能全额退款吗？",
            "退款原路返回要多久？我付了{amount}",
            "为什么我的退款申请被驳回了？订单{order}",
        ],
        "a": [
            "已为您提交退款申请，退款金额{amount}，预计{days}个工作日内原路退回。",
            "订单{order}的退款已于{date}处理，请留意银行到账通知。",
            "商品有质量问题可以全额退款，请上传照片，审核通过后{days}天内退回。",
            "退款将原路返回，银行卡一般需要{days}个工作日到账。",
            "您的申请因缺少商品照片被驳回，补充照片后可重新提交。",
            "订单{order}已取消，{amount}将在{days}天内退回原支付账户。",
        ],
        "f": ["好的，照片已经上传了。", "能快一点吗？", "到时候没到账我再找你们。", "谢谢处理。", "需要我寄回商品吗？"],
    },
    "return_exchange": {
        "q": [
            "{product}尺码不合适，可以换货吗？订单{order}",
            "收到的{product}颜色发错了",
            "七天无理由退货怎么操作？",
            "换货需要我自己付运费吗？",
            "订单{order}的{product}想退货，包装拆了还能退吗？",
        ],
        "a": [
            "可以换货，请在订单{order}详情页选择换货并填写需要的尺码。",
            "非常抱歉发错颜色，我们会安排免费换货，快递员{days}天内上门取件。",
            "在订单详情点击申请退货，选择七天无理由即可，商品需保持完好。",
            "因质量问题换货运费由我们承担，其他原因运费需您承担。",
            "包装拆开但商品不影响二次销售的，可以办理退货。",
        ],
        "f": ["什么时候上门取件？", "好的我去操作。", "换货要多久？", "明白，谢谢。"],
    },
    "account": {
        "q": [
            "我的账号登录不上了，一直提示密码错误",
            "怎么修改绑定的手机号？",
            "账号被冻结了怎么办？",
            "收不到验证码",
            "我想注销账号",
            "有陌生设备登录我的账号，是不是被盗了？",
        ],
        "a": [
            "请点击登录页的忘记密码，通过验证码重置密码。",
            "在账户设置-安全中心中可以更换绑定手机号，需要验证原手机号。",
            "账号因异常登录被临时冻结，完成身份验证后即可解冻。",
            "请检查短信是否被拦截，或者{days}分钟后重新获取验证码。",
            "注销账号后数据无法恢复，请在设置-账号注销中提交申请，{days}个工作日内处理。",
            "已为您强制下线其他设备，建议立即修改密码并开启登录保护。",
        ],
        "f": ["改好了，谢谢。", "还是收不到怎么办？", "需要多久能解冻？", "好的，我试一下。"],
    },
    "payment": {
        "q": [
            "付款的时候一直失败，订单{order}",
            "为什么扣了两次钱？订单{order}金额{amount}",
            "可以用信用卡分期吗？",
            "优惠券为什么用不了？",
            "支付成功了订单却显示未付款",
            "能开发票吗？订单{order}",
        ],
        "a": [
            "支付失败可能是银行限额导致的，建议更换支付方式或联系发卡行。",
            "经核实订单{order}重复扣款{amount}，多扣的款项将在{days}个工作日内退回。",
            "满{amount}可以使用信用卡分期，最长12期免息。",
            "该优惠券需满{amount}才能使用，且不适用于特价商品。",
            "支付状态同步有延迟，请{days}分钟后刷新，如仍未更新我们会人工处理。",
            "可以开具电子发票，请在订单{order}详情页申请，{days}个工作日内发送。",
        ],
        "f": ["好的，我换张卡试试。", "钱什么时候退回来？", "发票抬头怎么填？", "知道了。"],
    },
    "product_info": {
        "q": [
            "{product}保修多久？",
            "{product}有现货吗？什么时候补货？",
            "这款{product}和上一代有什么区别？",
            "{product}支持七天无理由退货吗？",
            "{product}现在多少钱？有没有活动？",
        ],
        "a": [
            "{product}提供一年质保，质保期内非人为损坏免费维修。",
            "{product}目前缺货，预计{date}补货，可以先加购物车等到货提醒。",
            "新款{product}续航更长、重量更轻，价格和上一代相同。",
            "{product}支持七天无理由退货，商品需保持完好。",
            "{product}现价{amount}，本周下单还可以领取满减券。",
        ],
        "f": ["那我下单了。", "能便宜一点吗？", "有什么颜色？", "好的，谢谢介绍。"],
    },
    "complaint": {
        "q": [
            "你们的客服态度太差了，我要投诉",
            "等了{days}天都没人处理我的问题，太失望了",
            "买的{product}用了{days}天就坏了，质量太差",
            "快递员没打电话就把包裹放门口，丢了谁负责？",
            "说好的{date}发货又延期，你们怎么回事？",
        ],
        "a": [
            "非常抱歉给您带来不好的体验，已记录您的投诉，专员会在{days}小时内联系您。",
            "对处理不及时深表歉意，您的问题已升级处理，今天内给您答复。",
            "很抱歉{product}出现问题，我们可以为您换新或全额退款{amount}。",
            "包裹未经同意放置门口是快递的责任，我们会先为您补发，再向快递公司追责。",
            "延期发货是我们的问题，已为您申请{amount}补偿券，再次致歉。",
        ],
        "f": ["希望不要再有下次。", "那补偿什么时候到？", "好吧，等你们电话。", "行，谢谢。"],
    },
}

_EN: dict[str, dict[str, list[str]]] = {
    "order_status": {
        "q": ["Where is my order {order}?", "Has order {order} shipped yet?", "My order {order} from {date} is late."],
        "a": [
            "Order {order} shipped on {date} and should arrive within {days} days.",
            "Order {order} is being packed and will ship today.",
            "Order {order} left our warehouse; the tracking number is {tracking}.",
        ],
        "f": ["Great, thanks.", "Can you hurry it up?", "What carrier is it?"],
    },
    "shipping": {
        "q": ["Tracking {tracking} has not updated in days.", "Can I change the address for order {order}?"],
        "a": [
            "I opened a trace with the carrier for {tracking}; expect an update within {days} days.",
            "Order {order} has not shipped, so you can edit the address in your order details.",
        ],
        "f": ["Thanks, I will wait.", "Done, thank you."],
    },
    "refund": {
        "q": ["I want a refund for order {order}, the {product} is broken.", "My refund of {amount} has not arrived."],
        "a": [
            "Your refund of {amount} was approved and will reach your account within {days} business days.",
            "Refunds go back to the original payment method within {days} business days.",
        ],
        "f": ["Do I need to send it back?", "Thanks."],
    },
    "return_exchange": {
        "q": ["The {product} does not fit, can I exchange it?", "How do I return the {product}?"],
        "a": [
            "Yes, choose Exchange in the details of order {order} and pick the new size.",
            "Start a return from your order page; a courier will pick it up within {days} days.",
        ],
        "f": ["How long does it take?", "OK, thanks."],
    },
    "account": {
        "q": ["I cannot log in to my account.", "How do I change the phone number on my account?"],
        "a": [
            "Use Forgot password on the login page to reset it with a verification code.",
            "Go to Settings, Security to change your phone number after verifying the old one.",
        ],
        "f": ["It worked, thanks.", "I still get no code."],
    },
    "payment": {
        "q": ["I was charged twice for order {order}.", "Why does my payment keep failing?"],
        "a": [
            "We found a duplicate charge of {amount} on order {order}; it will be refunded within {days} days.",
            "Payments can fail because of bank limits; please try another card or contact your bank.",
        ],
        "f": ["When will I get it back?", "I will try again."],
    },
    "product_info": {
        "q": ["How long is the warranty on the {product}?", "Is the {product} in stock?"],
        "a": [
            "The {product} comes with a one-year warranty.",
            "The {product} is out of stock; we expect more on {date}.",
        ],
        "f": ["Thanks for the info.", "Can you notify me?"],
    },
    "complaint": {
        "q": ["Nobody answered my ticket for {days} days.", "The {product} broke after {days} days."],
        "a": [
            "I am sorry for the delay; your case is escalated and a specialist will call you today.",
            "Sorry about the {product}; we can replace it or refund {amount}.",
        ],
        "f": ["I hope so.", "OK, waiting for the call."],
    },
}

_ZH_PII = {
    "cnMobile": ["我的手机号是{value}", "联系电话{value}", "有问题打我电话{value}", "手机{value}，请尽快回电"],
    "cnIdCard": ["我的身份证号是{value}", "实名认证用的身份证{value}", "身份证号码：{value}"],
    "email": ["我的邮箱是{value}", "请把发票发到{value}", "邮箱：{value}"],
    "bankCard": ["退款请退到银行卡{value}", "我用的是尾号不清楚的卡，卡号{value}", "银行卡号{value}"],
    "ipAddress": ["登录IP是{value}", "异常登录的IP地址{value}不是我", "我这边的IP是{value}"],
}
_EN_PII = {
    "cnMobile": ["my phone is {value}", "call me at {value}"],
    "cnIdCard": ["my ID number is {value}"],
    "email": ["my email is {value}", "send it to {value}"],
    "bankCard": ["refund to card {value}", "my card number is {value}"],
    "ipAddress": ["the login came from {value}", "my IP is {value}"],
}
_ZH_LOOKALIKE = [
    "参考编号{bad_id}",
    "之前那张卡{bad_card}已经注销了",
    "工单号{ticket}",
    "发票号码{invoice}",
    "下单时间{datetime}",
    "总共付了{amount}",
]
_EN_LOOKALIKE = ["reference {bad_id}", "old card {bad_card} is closed", "ticket {ticket}", "paid {amount} on {date}"]
_JUNK_RESPONSES: list[Callable[[random.Random, str], str]] = [
    lambda rng, context: "",
    lambda rng, context: "   ",
    lambda rng, context: rng.choice("好哈嗯啊呵") * rng.randint(12, 30),
    lambda rng, context: "ok" * rng.randint(8, 15),
    lambda rng, context: context,
    lambda rng, context: "".join(rng.choice("？！…#@*&%$") for _ in range(rng.randint(10, 25))),
    lambda rng, context: "好的\x00\x01\x02" + "\x07" * 5,
]
_ID_REGIONS = ["110101", "310104", "440305", "330106", "510107", "420106", "320102", "370202", "500103", "610113"]
_EMAIL_USERS = ["zhangwei", "li.na", "wang_fang88", "chen.jie2020", "liu.yang", "john.smith", "amy_w", "huang.lei"]
_EMAIL_DOMAINS = ["qq.com", "163.com", "126.com", "gmail.com", "outlook.com", "example.cn", "sina.com"]


# --- value makers ---------------------------------------------------------------------------------


def make_cn_id(rng: random.Random, valid: bool = True) -> str:
    """An 18-character resident ID.

    ``valid=False`` gives one with a wrong check character, chosen so the number is not a
    Luhn-valid card number either (it would rightly be redacted as one).
    """
    birth = datetime.date(1950, 1, 1) + datetime.timedelta(days=rng.randrange(20000))
    first17 = f"{rng.choice(_ID_REGIONS)}{birth:%Y%m%d}{rng.randrange(1000):03d}"
    check = pii.id_check_char(first17)
    if not valid:
        check = rng.choice([c for c in "0123456789X" if c != check and not pii.is_bank_card(first17 + c)])
    return first17 + check


def make_mobile(rng: random.Random) -> str:
    """A mainland mobile number in one of the ways people write them."""
    number = "1" + rng.choice("3456789") + "".join(rng.choice(string.digits) for _ in range(9))
    style = rng.randrange(5)
    if style == 1:
        return f"{number[:3]} {number[3:7]} {number[7:]}"
    if style == 2:
        return f"{number[:3]}-{number[3:7]}-{number[7:]}"
    if style == 3:
        return f"+86 {number}"
    return number


def _luhn_check_digit(partial: str) -> str:
    for digit in string.digits:
        if pii.luhn_valid(partial + digit):
            return digit
    raise AssertionError("unreachable: one of ten digits passes Luhn")


def make_card(rng: random.Random, valid: bool = True) -> str:
    """A card number (UnionPay 16/19 digits or Visa 16), sometimes grouped; ``valid=False`` fails Luhn."""
    prefix, length = rng.choice([("62", 16), ("62", 19), ("4", 16), ("5", 16)])
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    check = _luhn_check_digit(body)
    if not valid:
        check = str((int(check) + rng.randint(1, 9)) % 10)
    number = body + check
    if rng.random() < 0.4:
        separator = rng.choice(" -")
        number = separator.join(number[i : i + 4] for i in range(0, len(number), 4))
    return number


def make_email(rng: random.Random) -> str:
    """An e-mail address."""
    user = rng.choice(_EMAIL_USERS) + (str(rng.randint(1, 999)) if rng.random() < 0.5 else "")
    return f"{user}@{rng.choice(_EMAIL_DOMAINS)}"


def make_ipv4(rng: random.Random) -> str:
    """A public-looking IPv4 address."""
    return f"{rng.randint(1, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"


_PII_MAKERS: dict[str, Callable[[random.Random], str]] = {
    "cnMobile": make_mobile,
    "cnIdCard": make_cn_id,
    "email": make_email,
    "bankCard": make_card,
    "ipAddress": make_ipv4,
}


def _order_number(rng: random.Random) -> str:
    date = datetime.date(2024, 1, 1) + datetime.timedelta(days=rng.randrange(600))
    style = rng.randrange(3)
    if style == 0:  # 16 digits, date-prefixed: card length, but no card network starts with 20
        return f"{date:%Y%m%d}{rng.randrange(10**8):08d}"
    if style == 1:
        return f"DD{date:%Y%m%d}{rng.randrange(10**6):06d}"
    return f"{date:%y%m%d}{rng.randrange(10**6):06d}"  # 12 digits


def _tracking_number(rng: random.Random) -> str:
    carrier = rng.choice(["SF", "YT", "JD", "ZTO"])
    return carrier + "".join(rng.choice(string.digits) for _ in range(rng.choice([12, 13])))


def _amount(rng: random.Random, english: bool) -> str:
    value = rng.choice([rng.randint(9, 99), rng.randint(100, 999), rng.randint(1000, 9999)])
    cents = rng.choice(["", ".00", f".{rng.randint(10, 99)}"])
    if english:
        return f"${value:,}{cents}"
    return rng.choice([f"¥{value:,}{cents}", f"{value}{cents}元"])


def _date(rng: random.Random, english: bool) -> str:
    day = datetime.date(2024, 1, 1) + datetime.timedelta(days=rng.randrange(600))
    if english:
        return f"{day:%B} {day.day}"
    return rng.choice([f"{day.month}月{day.day}日", f"{day:%Y-%m-%d}", f"{day.year}年{day.month}月{day.day}日"])


def _slots(rng: random.Random, english: bool) -> dict[str, str]:
    """One set of slot values shared by a record's context and response."""
    return {
        "order": _order_number(rng),
        "tracking": _tracking_number(rng),
        "amount": _amount(rng, english),
        "date": _date(rng, english),
        "days": str(rng.randint(2, 15)),
        "product": rng.choice(_EN_PRODUCTS if english else _ZH_PRODUCTS),
        "ticket": "1" + rng.choice("012") + "".join(rng.choice(string.digits) for _ in range(9)),
        "invoice": "".join(rng.choice(string.digits) for _ in range(20)),
        "datetime": f"{rng.randint(2023, 2025)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}{rng.randint(0, 23):02d}"
        f"{rng.randint(0, 59):02d}{rng.randint(0, 59):02d}",
        "bad_id": make_cn_id(rng, valid=False),
        "bad_card": make_card(rng, valid=False),
    }


# --- records --------------------------------------------------------------------------------------


@dataclass(slots=True)
class LabelledRecord:
    """A generated record and what was planted in it.

    Attributes:
        record: the JSON object written to the file.
        kind: ``original``, ``exactDuplicate``, ``nearDuplicate`` or ``junk``.
        pii: ``(entity, value)`` pairs planted (values as written in the text).
        lookalikes: values that look like PII but are not.
    """

    record: dict[str, Any]
    kind: str = "original"
    pii: list[tuple[str, str]] = field(default_factory=list)
    lookalikes: list[str] = field(default_factory=list)


def _compose_original(rng: random.Random) -> LabelledRecord:
    intent = rng.choices(list(INTENT_WEIGHTS), weights=list(INTENT_WEIGHTS.values()))[0]
    english = rng.random() < ENGLISH_SHARE
    bank = (_EN if english else _ZH)[intent]
    slots = _slots(rng, english)
    openers, acks, closings = (
        (_EN_OPENERS, _EN_ACKS, _EN_CLOSINGS) if english else (_ZH_OPENERS, _ZH_ACKS, _ZH_CLOSINGS)
    )
    context = rng.choice(openers) + rng.choice(bank["q"]).format(**slots)
    response = rng.choice(acks) + rng.choice(bank["a"]).format(**slots) + rng.choice(closings)
    followup = rng.choice(bank["f"]) if rng.random() < 0.85 else ""
    labelled = LabelledRecord({})
    joiner = ", " if english else "，"
    if rng.random() < PII_RATE:
        entity = rng.choice(list(_PII_MAKERS))
        value = _PII_MAKERS[entity](rng)
        sentence = rng.choice((_EN_PII if english else _ZH_PII)[entity]).format(value=value)
        labelled.pii.append((entity, value))
        if rng.random() < 0.7:
            context = f"{context}{joiner}{sentence}"
        else:
            followup = f"{followup}{joiner if followup else ''}{sentence}"
    if rng.random() < LOOKALIKE_RATE:
        template = rng.choice(_EN_LOOKALIKE if english else _ZH_LOOKALIKE)
        context = f"{context}{joiner}{template.format(**slots)}"
        labelled.lookalikes.extend(slots[name] for name in _slot_names(template) if name in _LOOKALIKE_SLOTS)
    labelled.record = {"context": context, "response": response, "followup": followup, "intent": intent}
    return labelled


_LOOKALIKE_SLOTS = ("bad_id", "bad_card", "ticket", "invoice", "datetime", "amount")


def _slot_names(template: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(template) if name]


def _exact_duplicate(rng: random.Random, source: LabelledRecord) -> LabelledRecord:
    record = dict(source.record)
    if rng.random() < 0.5:  # same after normalisation: extra spaces, or different case
        record["response"] = "  " + record["response"].replace(" ", "  ") + " "
        record["context"] = record["context"].upper() if record["context"].isascii() else record["context"]
    return LabelledRecord(record, "exactDuplicate", list(source.pii), list(source.lookalikes))


def _near_duplicate(rng: random.Random, source: LabelledRecord) -> LabelledRecord:
    record = dict(source.record)
    english = record["context"].isascii()
    # A few words added at the very end (5-gram Jaccard stays above 0.9), sometimes with
    # punctuation changed too (invisible after normalisation).
    record["followup"] = (record["followup"] or "") + rng.choice(
        [" thanks", " ok", " great"] if english else ["谢谢", "好的", "嗯嗯", "收到"]
    )
    if rng.random() < 0.5:
        record["response"] = record["response"].replace("。", "！").replace(".", "!")
    return LabelledRecord(record, "nearDuplicate", list(source.pii), list(source.lookalikes))


def _junk(rng: random.Random) -> LabelledRecord:
    base = _compose_original(rng)
    record = dict(base.record)
    record["response"] = rng.choice(_JUNK_RESPONSES)(rng, record["context"])
    return LabelledRecord(record, "junk", list(base.pii), list(base.lookalikes))


def generate_labelled(count: int, seed: int = 0) -> list[LabelledRecord]:
    """Generate records with their labels (what was planted).

    Args:
        count: number of records.
        seed: random seed; the same seed gives the same records.

    Returns:
        The records in file order.
    """
    rng = random.Random(seed)
    out: list[LabelledRecord] = []
    originals: list[LabelledRecord] = []
    for _ in range(count):
        roll = rng.random()
        if originals and roll < EXACT_DUPLICATE_RATE:
            out.append(_exact_duplicate(rng, rng.choice(originals)))
        elif originals and roll < EXACT_DUPLICATE_RATE + NEAR_DUPLICATE_RATE:
            out.append(_near_duplicate(rng, rng.choice(originals)))
        elif roll < EXACT_DUPLICATE_RATE + NEAR_DUPLICATE_RATE + JUNK_RATE:
            out.append(_junk(rng))
        else:
            original = _compose_original(rng)
            originals.append(original)
            out.append(original)
    return out


def generate(count: int, seed: int = 0) -> list[dict[str, Any]]:
    """Generate ``count`` triple records (``context``, ``response``, ``followup``, ``intent``)."""
    return [labelled.record for labelled in generate_labelled(count, seed)]


def write_jsonl(items: list[dict[str, Any]], path: str | Path) -> Path:
    """Write records as JSON lines (UTF-8, not ASCII-escaped), atomically."""
    with fsutil.atomic_file(path) as handle:
        for item in items:
            handle.write(json.dumps(item, ensure_ascii=False) + "\n")  # type: ignore[attr-defined]
    return Path(path)


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m kubetune_trainer.data.synthetic --records N --output FILE --seed S``."""
    parser = argparse.ArgumentParser(
        prog="python -m kubetune_trainer.data.synthetic", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--records", type=int, required=True, help="number of records")
    parser.add_argument("--output", required=True, help="JSONL file to write")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.records < 1:
        parser.error("--records must be at least 1")
    write_jsonl(generate(args.records, args.seed), args.output)
    print(f"wrote {args.records} records to {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
