"""Secrets and PII: replaced by stable placeholders, every replacement counted by kind.

What is found, in any syntactic position (assignments, call arguments, comments, docstrings, YAML,
JSON or .env text inside strings), the way BigCode's PII pipeline treats code:

| kind | what | placeholder |
|---|---|---|
| `private_key` | PEM private key blocks | `<PRIVATE_KEY>` |
| `api_key` | tokens with a vendor's shape: AWS, GitHub, GitLab, Slack, Google, Stripe, OpenAI (`sk-proj-`, `sk-svcacct-`, legacy), Anthropic, Hugging Face, npm, PyPI, SendGrid; AWS secret keys after their name; detect-secrets' vendor plugins | `<API_KEY>` |
| `jwt` | a whole JSON Web Token (header, payload and signature) | `<JWT>` |
| `webhook_url` | Slack, Discord, Teams, Google Chat, Zapier webhook URLs, Telegram bot URLs | `<WEBHOOK_URL>` |
| `password` | a literal given to a password-like name (`password`, `passwd`, `pwd`), and the password of a URL's credentials | `<PASSWORD>` |
| `secret` | a literal given to a secret/token/key-like name (`SECRET_KEY`, `api_token`, `client_secret`, ...) | `<SECRET>` |
| `email` | addresses under any TLD | `<EMAIL>` |
| `ip_address` | public IPv4 and IPv6 addresses | `<IP_ADDRESS>` |

"Given to a name" covers `name = "v"`, `name: v` (YAML), `"name": "v"` (JSON), `NAME=v` (.env,
shell `export`), `f(name="v")`, `os.environ.setdefault("NAME", "v")`, `getenv("NAME", "v")`,
`name == "v"`. Left alone on purpose (each a negative of the labelled set in
`tests/data/pii_cases.py`): values that are code (`os.environ["X"]`, `get_token()`), names of other
things (`token_type = "bearer"`, `password_field = "pwd"`, `TOKEN_ENV = "GITHUB_TOKEN"`), templates and
dummies (`"${DB_PASSWORD}"`, `"<your-token>"`, `"changeme"`, `"xxxxxxxx"`); addresses under the
reserved documentation domains (`example.com/.org/.net`, `*.example`, `*.test`, `*.invalid`,
`*.localhost`) and `git@` (an SSH login, not a person); `name@2x.png` and other file names, decorators
and matrix products (`x@self.weight`); private, loopback, link-local, documentation
(192.0.2.0/24, 2001:db8::/32 ...) and multicast addresses, and dotted versions (`version = "1.2.3.4"`).
The placeholders are fixed strings, so a redacted file is the same on every run.
"""

from __future__ import annotations

import ipaddress
import re

import numpy as np

from codecomplete.data.document import ascii_proxy

PRIVATE_KEY = re.compile(
    r"-----BEGIN ((?:[A-Z0-9]+ )*)PRIVATE KEY( BLOCK)?-----.*?-----END ((?:[A-Z0-9]+ )*)PRIVATE KEY( BLOCK)?-----",
    re.S,
)
API_KEYS = re.compile(
    r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[0-9A-Z]{16}\b"  # AWS access key ids
    r"|\bgh[pousr]_[A-Za-z0-9]{36,255}\b|\bgithub_pat_[A-Za-z0-9_]{22,255}\b"  # GitHub
    r"|\bglpat-[A-Za-z0-9_-]{20,}"  # GitLab
    r"|\bxox[abposre]-[A-Za-z0-9-]{10,}|\bxapp-\d-[A-Za-z0-9-]{10,}"  # Slack
    r"|\bAIza[0-9A-Za-z_\-]{35}|\bya29\.[0-9A-Za-z_\-]{20,}"  # Google
    r"|\b[rs]k_(?:live|test)_[0-9a-zA-Z]{20,}\b"  # Stripe
    r"|\bsk-(?:proj|svcacct|admin|ant-(?:api|admin)\d\d)-[A-Za-z0-9_-]{20,}"  # OpenAI projects, Anthropic
    r"|\bsk-[A-Za-z0-9]{32,}\b|\bsk-[A-Za-z0-9_-]{8,}T3BlbkFJ[A-Za-z0-9_-]{8,}"  # OpenAI legacy
    r"|\bhf_[A-Za-z0-9]{30,}\b|\bnpm_[A-Za-z0-9]{36}\b|\bpypi-AgE[A-Za-z0-9_-]{50,}"  # HF, npm, PyPI
    r"|\bSG\.[A-Za-z0-9_-]{16,32}\.[A-Za-z0-9_-]{16,64}"  # SendGrid
    r"|\bSK[0-9a-f]{32}\b|\b[0-9a-f]{32}-us\d{1,2}\b|\b\d{8,10}:AA[A-Za-z0-9_-]{33}\b"  # Twilio, Mailchimp, Telegram
)
API_KEY_GATES = ("AKIA", "ASIA", "AGPA", "AIDA", "AROA", "ANPA", "ANVA", "AIPA", "ghp_", "gho_", "ghu_", "ghs_",
                 "ghr_", "github_pat_", "glpat-", "SK", "-us", ":AA",
                 "xox", "xapp-", "AIza", "ya29.", "k_live_", "k_test_", "sk-", "hf_", "npm_", "pypi-", "SG.")  # fmt: skip
AWS_SECRET = re.compile(r"(?i)(aws_?secret_?(?:access_?)?key\s*[\"']?\s*[:=,]\s*[\"']?)([A-Za-z0-9/+=]{40})")
JWT = re.compile(r"(?<![\w-])eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]*")
WEBHOOK = re.compile(
    r"https?://(?:hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_/-]{16,}"
    r"|(?:[\w-]+\.)?discord(?:app)?\.com/api/webhooks/\d+/[\w-]+"
    r"|[\w-]+\.webhook\.office\.com/webhookb2/[\w@/.-]+|outlook\.office(?:365)?\.com/webhook/[\w@/.-]+"
    r"|chat\.googleapis\.com/v1/spaces/[\w-]+/messages\?[^\s\"'<>`]+"
    r"|hooks\.zapier\.com/hooks/catch/[\w/]+|api\.telegram\.org/bot\d+:[\w-]+)"
)
WEBHOOK_GATES = (
    "hooks.slack.com",
    "discord",
    "webhook",
    "chat.googleapis.com",
    "hooks.zapier.com",
    "api.telegram.org",
)
CREDENTIAL_URL = re.compile(r"(://[^/\s:@\"'<]+:)([^/\s@\"'<]+)@")

# --- a literal given to a secret-like name -----------------------------------------------------
# The name's core word, then the rest of the identifier, then a separator, then the value: quoted
# (any position: assignment, keyword argument, dict/JSON/YAML value, second argument of
# setdefault/getenv) or bare (YAML, .env, `export`, comments).
SECRET_ASSIGN = re.compile(
    r"(?i)(?P<core>(?:api|access|secret|private|auth|signing|encryption|master|client)[_-]?key|"
    r"passw(?:or)?d|passwd|pwd|secret|token|apikey|credentials?)"
    r"(?P<rest>[A-Za-z0-9_-]*)"
    r"(?P<sep>\s*[\"'\]]?\s*(?::\s*[A-Za-z_][\w\[\]., |]{0,40}?\s*=|::?=|==|=>|[:=,])\s*|\s+(?:is|was)\s+)"
    r"(?:(?P<prefix>[rbuRBU]{0,2})(?P<quote>[\"'`])(?P<quoted>[^\"'`\s\\]{6,200})(?=[\"'`\\])"
    r"|(?P<bare>[A-Za-z0-9_+/=!@#$%^&*~.-]{8,200})(?=[\s\"',;\\)&{}]|$))",
    re.M,
)
SECRET_GATES = ("passw", "pwd", "secret", "token", "key", "credential")
# `token_type = "bearer"` names something else: identifiers ending so are not secrets.
NOT_A_SECRET_NAME = re.compile(
    r"(?i)(?:^|[_-]|(?<=[a-z])(?=[A-Z]))(?:name|names|field|fields|url|uri|urls|path|paths|file|files|env|var|vars|"
    r"header|headers|type|types|len|length|prefix|suffix|pattern|regex|re|id|ids|class|cls|label|param|params|"
    r"attr|column|policy|provider|endpoint|validator|hint|help|msg|message|prompt|format|fmt|mode|count|size|"
    r"expiry|expires|expiration|ttl|timeout|scope|scopes|required|enabled|hash|hasher|hashed|hashes|file|dir|"
    r"location|method|methods|kind|index|idx|position|pos|start|end|char|chars|sep|separator|"
    r"schema|template|store|storage|backend|manager|handler|cache|source|getter|setter|field_name|input|"
    r"reset|change|confirm|confirmation|min|max|limit|strength|algorithm|algo|encoding|version)$"
)
# Tokens that are no credentials: a model's special tokens, pagination cursors, token counts.
TOKEN_WORDS = re.compile(
    r"(?i)tokeni[sz]|tokens?_?(?:count|ids?|type|stream|list|budget|usage|limit)|tokens$|"
    r"(?:mask|pad|bos|eos|unk|sep|cls|special|page|next|prev|previous|continuation|resume|sync|cursor|start|end|"
    r"max|min|num|n|output|input|prompt|completion|total|cache|cached|reasoning|stop|image|audio|video|"
    r"csrf|xsrf)_?tokens?"
)
DUMMY = re.compile(
    r"(?i)^(?:change_?me|changeit|password\d*|passw(?:or)?d|secret|token|test|testing|dummy|example|sample|"
    r"placeholder|redacted|hidden|none|null|nil|undefined|default|empty|foo|bar|foobar|your|my|mock|fake|"
    r"todo|fixme|xxx+|x+|\*+|\.+|-+|_+|0+|1234+|12345678|abcdef|qwerty|secret_?key|api_?key|access_?token|"
    r"not_?set|unset|missing|required|optional|string|str|bytes|hex|base64)$"
)
_SECRET_VALUE_REJECT = re.compile(
    r"[{}$<>%]|^\.{0,2}/|^~/|://|\.\.\.|^[A-Z][A-Z0-9_]*$|^(?:self|cls|os|sys)\."
)
_ENV_NAME = re.compile(r"[A-Z0-9_]+$")
_NAME_REST = re.compile(r"^[sS]?(?:[_-][A-Za-z0-9_-]*|[A-Z0-9][A-Za-z0-9_-]*)?$")
AUTH_HEADER = re.compile(
    r"(?i)(authorization[\"']?\s*[:=,]\s*[\"']?(?:bearer|basic|token)\s+)([A-Za-z0-9._~+/=-]{8,})"
)

# --- emails --------------------------------------------------------------------------------------
EMAIL = re.compile(
    r"(?<![\w.+%-])([A-Za-z0-9][A-Za-z0-9._%+-]{0,63})@"
    r"((?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+)([A-Za-z]{2,24}|xn--[a-z0-9-]{2,59})(?![\w-])"
)
# Any top-level domain counts. What makes `x@self.weight` a matrix product and not an address: a first
# label that is a variable of array code, an attribute of arrays as the TLD, or a call/index after it.
CODE_LABELS = {
    "self",
    "cls",
    "np",
    "torch",
    "tf",
    "jnp",
    "jax",
    "this",
    "other",
    "model",
    "layer",
    "module",
    "ctx",
}
CODE_ATTRS = {"t", "mt", "h", "weight", "weights", "bias", "data", "value", "values", "matrix", "shape", "real",
              "imag", "conj", "grad", "transpose", "inverse", "inv", "dot"}  # fmt: skip
FILE_EXTENSIONS = set(
    "png jpg jpeg gif svg webp ico bmp tif tiff css scss less js mjs cjs ts tsx jsx py pyc pyi pyx pxd json yaml "
    "yml toml ini cfg conf txt md rst html htm xml pdf zip gz tgz tar bz2 xz whl egg so dll dylib exe bin dat "
    "csv tsv h hpp hh c cc cpp cxx rs go java kt rb php sh bash zsh lock log mp3 mp4 wav ogg woff woff2 ttf otf "
    "eot map db sqlite pkl pickle npy npz pt pth onnx ipynb proto sql tmp bak".split()
)
RESERVED_DOMAINS = re.compile(
    r"(?i)(?:^|\.)(?:example\.(?:com|org|net)|example|test|invalid|localhost|local)\.?$"
)
_RETINA = re.compile(r"^\d+(?:\.\d+)?x\.$|^\d+(?:\.\d+)?x\.", re.I)


def _is_email(m: re.Match) -> bool:
    local, domain, tld = m.group(1), m.group(2), m.group(3)
    tld_l = tld.lower()
    if (
        domain.split(".")[0].lower() in CODE_LABELS
        or tld_l in CODE_ATTRS
        or m.string[m.end() : m.end() + 1] in ("(", "[")
    ):
        return False  # `x@self.weight`, `a@b.T`, `q@k.transpose(...)`
    if tld_l in FILE_EXTENSIONS or _RETINA.match(domain):
        return False  # `icon@2x.png`, `logo@dark.svg`
    if local.lower() == "git" or RESERVED_DOMAINS.search(domain + tld):
        return False  # an SSH login; documentation domains (RFC 2606)
    return True


# --- IP addresses --------------------------------------------------------------------------------
IPV4 = re.compile(r"(?<![\w.:])(?:\d{1,3}\.){3}\d{1,3}(?![\w.])")  # `::ffff:a.b.c.d` is IPv6's
IPV4_GATE = re.compile(r"\.\d{1,3}\.\d{1,3}\.\d")  # starts with a literal: a fast scan
IPV6 = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{1,4}:){1,7}(?::|(?::[0-9A-Fa-f]{1,4}){1,7}|[0-9A-Fa-f]{1,4}"
    r"|(?::[0-9A-Fa-f]{1,4}){0,5}:?(?:\d{1,3}\.){3}\d{1,3})(?![\w:])"
    r"|(?<![\w:.])::(?:[0-9A-Fa-f]{1,4}:){0,6}[0-9A-Fa-f]{1,4}(?![\w:.])"
    r"|(?<![\w:.])::ffff:(?:\d{1,3}\.){3}\d{1,3}(?![\w.])"  # IPv4-mapped
)
IPV6_GATE = re.compile(r":[0-9A-Fa-f]{0,4}:")  # starts with a literal: a fast scan
VERSION_CONTEXT = re.compile(
    r"(?i)(?:version|ver|release|_v|rfc\s?\d+|sections?|§|oid|objectidentifier)\W{0,6}$"
)


# Addresses that stand for "an address" in tests and docs, like the documentation ranges.
DUMMY_IPV4 = {"1.2.3.4", "4.3.2.1", "5.6.7.8", "1.1.1.1", "2.2.2.2", "3.3.3.3", "4.4.4.4"}


def _public_ip(s: str) -> bool:
    if s in DUMMY_IPV4 or s.endswith(".0") or ("." in s and ":" not in s and int(s.split(".", 1)[0]) <= 2):
        return False  # `1.2.3.4` in a test; `1.1.0.0` a network, `1.2.3.0` a version; 0-2.x.y.z: ASN.1 OIDs
    if "." in s and any(len(o) > 1 and o.startswith("0") for o in s.rsplit(":", 1)[-1].split(".")):
        return False  # 01.02.03.04 is a version or a date, not an address
    try:
        ip = ipaddress.ip_address(s)
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped is not None:
        return _public_ip(str(ip.ipv4_mapped))
    if ip.version == 6:
        groups = [g for g in s.split(":") if g]
        # `x[1::2]`-like slices and `a:b:c` are no addresses: a real one has 3+ groups, or all 8
        if len(groups) < 3 or (len(groups) < 8 and "::" not in s):
            return False
        if ip.ipv4_mapped is not None:
            return _public_ip(str(ip.ipv4_mapped))
    return ip.is_global and not ip.is_multicast


def _secret_value_ok(value: str, bare: bool) -> bool:
    if DUMMY.match(value) or _SECRET_VALUE_REJECT.search(value) or len(set(value)) < 4:
        return False
    has_digit = any(c.isdigit() for c in value)
    has_alpha = any(c.isalpha() for c in value)
    if not has_alpha:
        return False  # a number: a count or an id far more often than a PIN
    if bare:
        symbols = any(c in "!@#$%^&*+/=~" for c in value)
        return has_alpha and (has_digit or symbols) and not re.fullmatch(r"[A-Za-z_]+\d?", value)
    if re.fullmatch(r"[a-z_.:-]+", value) or re.fullmatch(r"[A-Za-z]+(?:[._-][A-Za-z]+)+", value):
        return False  # `bearer`, `access_token`, `x-api-key`, `Auth.Token`: words, not secrets
    return has_digit or not value.isalpha() or not value.islower()


PLACEHOLDERS = ("<PRIVATE_KEY>", "<API_KEY>", "<PASSWORD>", "<SECRET>", "<EMAIL>", "<IP_ADDRESS>", "<JWT>",
                "<WEBHOOK_URL>")  # fmt: skip
KINDS = ("private_key", "api_key", "jwt", "webhook_url", "password", "secret", "email", "ip_address")

# detect-secrets (Yelp's library, the one BigCode used) as a last pass over the lines with a
# secret-like word: its vendor plugins know shapes the regexes above do not (Artifactory, Twilio,
# Mailchimp, ...). Its keyword plugin is replaced by SECRET_ASSIGN (it only sees `name = "literal"`).
_PLUGINS = [
    "ArtifactoryDetector", "AzureStorageKeyDetector", "CloudantDetector", "DiscordBotTokenDetector",
    "IbmCloudIamDetector", "IbmCosHmacDetector", "SoftlayerDetector", "SquareOAuthDetector",
]  # fmt: skip
DETECT_SECRETS_GATES = ("artifactory", "accountkey=", "cloudant", "discord", "ibm", "softlayer", "sq0")


def _name_start(text: str, pos: int) -> int:
    while pos > 0 and (text[pos - 1].isalnum() or text[pos - 1] in "_-"):
        pos -= 1
    if text[pos - 1 : pos] == "\\" and text[pos : pos + 1] in ("n", "t", "r"):
        pos += 1  # `"...\nDB_PASSWORD=..."`: the name starts after the escape
    return pos


def _camel_in_config(text: str, m: re.Match, value: str) -> bool:
    """`password: testPass` (YAML) or `DB_PASSWORD=testPass` (.env): a bare camelCase word is a value
    there, while `password=userPassword` or `{"password": userPassword}` in code is a variable."""
    sep = m.group("sep").strip()
    if not re.fullmatch(r"[a-z]+[A-Z][A-Za-z]*", value) or any(q in m.group("sep") for q in "\"'"):
        return False
    env_style = sep == "=" and _ENV_NAME.match(text, _name_start(text, m.start()), m.end("rest")) is not None
    return sep in (":", "is", "was") or env_style or (sep == "=" and _in_query(text, m.start()))


def _in_query(text: str, pos: int) -> bool:
    """Whether the name whose core word starts at `pos` is a URL query parameter (`?name=`)."""
    pos = _name_start(text, pos)
    return text[pos - 1 : pos] in ("?", "&")


def _finds(text: str, needles) -> list[int]:
    """Positions of every occurrence of the needles (str.find: a C scan, unlike an alternation)."""
    out = []
    for needle in needles:
        i = text.find(needle)
        while i != -1:
            out.append(i)
            i = text.find(needle, i + 1)
    return out


class _Gates:
    """Where any of several needles (2+ ASCII characters) starts in a text: the positions `_finds`
    gives, found with one numpy pass over the text's character triples (a 2**21-entry table of the
    needles' first three characters) and `startswith` at the few candidates, instead of one
    `str.find` scan of the whole text per needle (40 needles were the most expensive part of the
    redaction)."""

    def __init__(self, needles, folded=()):
        """`folded`: lower-case needles found in any case (`text.lower()` holds them there)."""
        self.needles = tuple(needles) + tuple(folded)
        self.folded = frozenset(folded)
        self.table = np.zeros(1 << 21, dtype=bool)
        self.first: dict[int, list[str]] = {}
        for needle in self.needles:
            cases = [(c.lower(), c.upper()) if needle in self.folded else (c,) for c in needle[:3]]
            for head in {(a, b, c) for a in cases[0] for b in cases[1] for c in (cases + [[""]])[2]}:
                codes = [ord(c) for c in head if c]
                for third in [codes[2]] if len(codes) == 3 else range(128):  # 2 characters: any third
                    code = codes[0] << 14 | codes[1] << 7 | third
                    self.table[code] = True
                    if needle not in self.first.setdefault(code, []):
                        self.first[code].append(needle)

    def find(self, text: str) -> list[int]:
        return [i for i, _ in self.find_needles(text)]

    def find_needles(self, text: str) -> list[tuple[int, str]]:
        """(position, needle) of every occurrence."""
        if len(text) < 2:
            return []
        text = ascii_proxy(text)[0]  # same positions; no needle holds a non-ASCII character
        raw = np.frombuffer(text.encode("ascii") + b"\0", dtype=np.uint8).astype(np.uint32)
        codes = (raw[:-2] << 14) | (raw[1:-1] << 7) | raw[2:]
        at = np.flatnonzero(self.table[codes])
        out = []
        folded = self.folded
        for i, code in zip(at.tolist(), codes[at].tolist(), strict=True):
            for needle in self.first[code]:
                if text.startswith(needle, i) or (
                    needle in folded and text[i : i + len(needle)].lower() == needle
                ):
                    out.append((i, needle))
        return out


def _on_lines(text: str, positions: list[int], fn) -> str:
    """`fn` applied to each line holding one of `positions` (a line once), the rest untouched."""
    if not positions:
        return text
    spans = []
    for p in sorted(positions):
        if spans and p < spans[-1][1]:
            continue
        start = text.rfind("\n", 0, p) + 1
        end = text.find("\n", p)
        spans.append((start, len(text) if end == -1 else end))
    parts, last = [], 0
    for start, end in spans:
        parts.append(text[last:start])
        parts.append(fn(text[start:end]))
        last = end
    parts.append(text[last:])
    return "".join(parts)


_API_KEY_GATES = _Gates(API_KEY_GATES)
_SECRET_GATES = _Gates(SECRET_GATES)
_DETECT_SECRETS_GATES = _Gates(DETECT_SECRETS_GATES)
# every gate in one pass over the text: the vendor prefixes as written, the names in any case
_ALL_GATES = _Gates(API_KEY_GATES, folded=SECRET_GATES + DETECT_SECRETS_GATES)
_API_KEY_NEEDLES = frozenset(API_KEY_GATES)


class Redactor:
    def __init__(
        self, emails: bool = True, ip_addresses: bool = True, secrets: bool = True, entropy: bool = False
    ):
        self.emails, self.ips, self.secrets, self.entropy = emails, ip_addresses, secrets, entropy
        self._settings = None

    def _scan_settings(self):
        if self._settings is None:
            plugins = list(_PLUGINS)
            if self.entropy:
                plugins += ["Base64HighEntropyString", "HexHighEntropyString"]
            self._settings = {"plugins_used": [{"name": p} for p in plugins]}
        return self._settings

    def redact(self, text: str) -> tuple[str, dict[str, int]]:
        counts: dict[str, int] = {}

        def sub(pattern: re.Pattern, kind: str, placeholder: str, check=None, group: int = 0):
            def repl(m: re.Match) -> str:
                if check is not None and not check(m):
                    return m.group(0)
                counts[kind] = counts.get(kind, 0) + 1
                if group:
                    whole, at = m.group(0), m.start(0)
                    return whole[: m.start(group) - at] + placeholder + whole[m.end(group) - at :]
                return placeholder

            return lambda part: pattern.sub(repl, part)

        # Cheap gates first (substrings, or a regex that starts with a literal), then each pattern
        # runs only on the lines the gate hit: Python's re has no fast scan for an alternation or a
        # character class, and running every pattern over every byte cost more than the rest of
        # the pipeline together.
        lower = text.lower()
        original = text
        # the vendor-prefix, secret-name and detect-secrets gates in one pass over the text
        all_hits = _ALL_GATES.find_needles(text) if self.secrets else []
        lower_hits = [(i, needle) for i, needle in all_hits if needle not in _API_KEY_NEEDLES]
        if self.secrets:
            if "private key" in lower:  # a block spans lines: the whole text
                text = sub(PRIVATE_KEY, "private_key", "<PRIVATE_KEY>")(text)
            if "eyj" in lower:
                text = _on_lines(text, _finds(text.lower(), ("eyj",)), sub(JWT, "jwt", "<JWT>"))
            if "://" in text and any(g in lower for g in WEBHOOK_GATES):
                text = _on_lines(text, _finds(text, ("://",)), sub(WEBHOOK, "webhook_url", "<WEBHOOK_URL>"))
            if text is original:
                hits = [i for i, needle in all_hits if needle in _API_KEY_NEEDLES]
            else:  # an earlier pattern changed the text
                hits = _API_KEY_GATES.find(text)
            if hits:
                text = _on_lines(text, hits, sub(API_KEYS, "api_key", "<API_KEY>"))
            if "secret" in lower:
                text = sub(AWS_SECRET, "api_key", "<API_KEY>", group=2)(text)
            if "authorization" in lower:
                text = sub(AUTH_HEADER, "secret", "<SECRET>", group=2)(text)
            if "://" in text:  # credentials in a URL: before emails, `pw@host.io` is not an address
                text = _on_lines(
                    text, _finds(text, ("://",)), sub(CREDENTIAL_URL, "password", "<PASSWORD>", group=2)
                )
            if text is original:
                hits = [i for i, needle in lower_hits if needle in SECRET_GATES]
            else:  # an earlier pattern changed the text
                hits = _SECRET_GATES.find(text.lower())
            if hits:
                text = _on_lines(text, hits, lambda part: self._named_secrets(part, counts))
        if self.emails and "@" in text:
            text = _on_lines(text, _finds(text, ("@",)), sub(EMAIL, "email", "<EMAIL>", check=_is_email))
        if self.ips:
            hits = [m.start() for m in IPV4_GATE.finditer(text)]
            if hits:
                text = _on_lines(text, hits, sub(IPV4, "ip_address", "<IP_ADDRESS>", check=self._ip_ok))
            hits = [m.start() for m in IPV6_GATE.finditer(text)]
            if hits:
                text = _on_lines(
                    text,
                    hits,
                    sub(IPV6, "ip_address", "<IP_ADDRESS>", check=lambda m: _public_ip(m.group(0))),
                )
        if self.secrets and (self.entropy or any(n in DETECT_SECRETS_GATES for _, n in lower_hits)):
            text = self._detect_secrets(text, counts)
        return text, counts

    @staticmethod
    def _ip_ok(m: re.Match) -> bool:
        if VERSION_CONTEXT.search(m.string, max(0, m.start() - 24), m.start()):
            return False  # version = "1.2.3.4"
        return _public_ip(m.group(0))

    @staticmethod
    def _named_secrets(text: str, counts: dict[str, int]) -> str:
        def repl(m: re.Match) -> str:
            rest, whole = m.group("rest"), m.group(0)
            value = m.group("quoted") or m.group("bare")
            bare = m.group("quoted") is None
            tail = ""
            if bare and "&" in value and _in_query(text, m.start()):
                value, tail = value.split("&", 1)  # `?token=v&page=2`: the value ends at the next `&`
                tail = "&" + tail
            full = text[_name_start(text, m.start()) : m.end("rest")]
            if not _NAME_REST.match(rest) or NOT_A_SECRET_NAME.search(rest) or TOKEN_WORDS.search(full):
                return whole
            if "," in m.group("sep") and (
                bare or not _ENV_NAME.match(text, _name_start(text, m.start()), m.end("rest"))
            ):
                return whole  # `setdefault("API_TOKEN", "v")`; not `("password", "localhost:22")` in a table
            if not _secret_value_ok(value, bare) and not (bare and _camel_in_config(text, m, value)):
                return whole
            kind = "password" if m.group("core").lower().startswith(("pass", "pwd")) else "secret"
            counts[kind] = counts.get(kind, 0) + 1
            head = whole[: len(whole) - len(value) - len(tail)]
            return head + ("<PASSWORD>" if kind == "password" else "<SECRET>") + tail

        return SECRET_ASSIGN.sub(repl, text)

    def _detect_secrets(self, text: str, counts: dict[str, int]) -> str:
        from detect_secrets.core.scan import scan_line
        from detect_secrets.settings import transient_settings

        lines = text.split("\n")
        changed = False
        if self.entropy or not text.isascii():
            candidates = range(len(lines))
        else:  # the lines that hold a gate (ASCII: `lower` keeps positions; no gate holds a newline)
            starts = np.cumsum([0] + [len(line) + 1 for line in lines[:-1]])
            candidates = sorted(
                set(np.searchsorted(starts, _DETECT_SECRETS_GATES.find(text.lower()), "right") - 1)
            )
        with transient_settings(self._scan_settings()):
            for i in candidates:
                line = lines[i]
                if len(line) > 1000 or not (
                    self.entropy or any(g in line.lower() for g in DETECT_SECRETS_GATES)
                ):
                    continue
                for secret in scan_line(line):
                    value = secret.secret_value or ""
                    if len(value) < 8 or value in PLACEHOLDERS or value not in line:
                        continue
                    line = line.replace(value, "<API_KEY>")
                    counts["api_key"] = counts.get("api_key", 0) + 1
                    changed = True
                lines[i] = line
        return "\n".join(lines) if changed else text
