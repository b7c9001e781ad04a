"""Secrets and PII: replaced by stable placeholders, every replacement counted by kind.

Regexes catch what has a known shape (private key blocks, AWS / GitHub / Slack / Google / Stripe
keys, emails, public IPv4 addresses); detect-secrets (Yelp's detector library, the one BigCode used)
then scans the lines that mention a password, secret, token or key, with its keyword and
vendor plugins (its high-entropy plugins flag hashes and test vectors in code; off unless asked).
The placeholders are fixed strings, so a redacted file is the same on every run:
`<PRIVATE_KEY>`, `<API_KEY>`, `<PASSWORD>`, `<EMAIL>`, `<IP_ADDRESS>`.
"""

from __future__ import annotations

import ipaddress
import re

from codecomplete.data.steps import CurateStep

PRIVATE_KEY = re.compile(
    r"-----BEGIN ((?:[A-Z0-9]+ )*)PRIVATE KEY( BLOCK)?-----.*?-----END ((?:[A-Z0-9]+ )*)PRIVATE KEY( BLOCK)?-----",
    re.S,
)
API_KEYS = re.compile(
    r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[0-9A-Z]{16}\b"  # AWS access key ids
    r"|\bgh[pousr]_[A-Za-z0-9]{36,255}\b|\bgithub_pat_[A-Za-z0-9_]{22,255}\b"  # GitHub
    r"|\bxox[abposr]-[A-Za-z0-9-]{10,}"  # Slack
    r"|\bAIza[0-9A-Za-z_\-]{35}\b"  # Google
    r"|\b[rs]k_live_[0-9a-zA-Z]{20,}\b"  # Stripe
    r"|\bsk-(?:proj-)?[A-Za-z0-9]{32,}\b"  # OpenAI
)
AWS_SECRET = re.compile(r"(?i)(aws_?secret_?(?:access_?)?key\s*[\"']?\s*[:=]\s*[\"']?)([A-Za-z0-9/+=]{40})")
EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@((?:[A-Za-z0-9-]+\.)+([A-Za-z]{2,24}))\b")
# Generic and common country TLDs; `x@self.weight` (matrix product) is not an address.
TLDS = set("com org net edu gov mil int io ai co dev app info biz me us uk de fr jp cn ru nl se no fi dk ch "
           "at be it es pl cz br in au ca nz za kr tw hk sg il ie pt gr hu ro ua tr mx ar cl eu xyz tech".split())  # fmt: skip
IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w.])")
# Lines worth a detect-secrets scan: a password/secret/token/key name given a string literal, or a URL
# with credentials. (A bare `pass` or `tokenize` must not send every line through the scanner.)
# Found in two steps because Python's re scans fast for a leading character set, not for an
# alternation of words: first `= "literal"`, then the name just before it.
ASSIGN_LITERAL = re.compile(r"[:=]\s*[rbuf]{0,2}[\"'][^\"'\s]{6,}")
SECRET_NAME = re.compile(
    r"(?i)(?:passw(?:or)?d|pwd|secret|token|api_?key|apikey|auth|credential|private_?key|access_?key)"
)
CREDENTIAL_URL = re.compile(r"(://[^/\s:@\"'<]+:)[^/\s@\"'<]+@")


def _count(counts: dict[str, int], kind: str, replacement: str) -> str:
    counts[kind] = counts.get(kind, 0) + 1
    return replacement


def _secret_hint(text: str) -> bool:
    for m in ASSIGN_LITERAL.finditer(text):
        if SECRET_NAME.search(text, max(0, m.start() - 40), m.start()):
            return True
    return "://" in text and CREDENTIAL_URL.search(text) is not None


API_KEY_GATES = ("AKIA", "ASIA", "AGPA", "AIDA", "AROA", "ANPA", "ANVA", "AIPA", "ghp_", "gho_", "ghu_", "ghs_", "ghr_",
                 "github_pat_", "xox", "AIza", "k_live_", "sk-")  # fmt: skip
HINT_GATES = ("passw", "pwd", "secret", "token", "key", "auth", "credential", "://")
IPV4_GATE = re.compile(r"\d\.\d+\.\d+\.\d")
PLACEHOLDERS = ("<PRIVATE_KEY>", "<API_KEY>", "<PASSWORD>", "<EMAIL>", "<IP_ADDRESS>")

_PLUGINS = [
    "ArtifactoryDetector", "AWSKeyDetector", "AzureStorageKeyDetector", "BasicAuthDetector", "CloudantDetector",
    "DiscordBotTokenDetector", "GitHubTokenDetector", "GitLabTokenDetector", "IbmCloudIamDetector",
    "IbmCosHmacDetector", "JwtTokenDetector", "KeywordDetector", "MailchimpDetector", "NpmDetector",
    "OpenAIDetector", "PrivateKeyDetector", "PypiTokenDetector", "SendGridDetector", "SlackDetector",
    "SoftlayerDetector", "SquareOAuthDetector", "StripeDetector", "TelegramBotTokenDetector", "TwilioKeyDetector",
]  # fmt: skip


def _public_ip(s: str) -> bool:
    if any(len(o) > 1 and o.startswith("0") for o in s.split(".")):
        return False  # 01.02.03.04 is a version or a date, not an address
    try:
        ip = ipaddress.ip_address(s)
    except ValueError:
        return False
    return ip.is_global and not ip.is_multicast


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

        def sub(
            pattern: re.Pattern, kind: str, placeholder: str, text: str, check=None, group: int = 0
        ) -> str:
            def repl(m: re.Match) -> str:
                if check is not None and not check(m):
                    return m.group(0)
                counts[kind] = counts.get(kind, 0) + 1
                if group:
                    return m.group(0)[: m.start(group) - m.start(0)] + placeholder
                return placeholder

            return pattern.sub(repl, text)

        # Substring gates first: Python's re has no literal-prefix scan for alternations, and
        # most files contain none of these, so the regexes run on few files.
        lower = text.lower()
        if self.secrets:
            if "private key" in lower:
                text = sub(PRIVATE_KEY, "private_key", "<PRIVATE_KEY>", text)
            if any(p in text for p in API_KEY_GATES):
                text = sub(API_KEYS, "api_key", "<API_KEY>", text)
            if "secret" in lower:
                text = sub(AWS_SECRET, "api_key", "<API_KEY>", text, group=2)
            if "://" in text:  # credentials in a URL: before emails, `pw@host.io` is not an address
                text = CREDENTIAL_URL.sub(
                    lambda m: _count(counts, "password", m.group(1) + "<PASSWORD>@"), text
                )
        if self.emails and "@" in text:
            text = sub(EMAIL, "email", "<EMAIL>", text, check=lambda m: m.group(2).lower() in TLDS)
        if self.ips and IPV4_GATE.search(text):
            text = sub(IPV4, "ip_address", "<IP_ADDRESS>", text, check=lambda m: _public_ip(m.group(0)))
        if self.secrets and any(k in lower for k in HINT_GATES) and _secret_hint(text):
            text = self._detect_secrets(text, counts)
        return text, counts

    def _detect_secrets(self, text: str, counts: dict[str, int]) -> str:
        from detect_secrets.core.scan import scan_line
        from detect_secrets.settings import transient_settings

        lines = text.split("\n")
        changed = False
        with transient_settings(self._scan_settings()):
            for i, line in enumerate(lines):
                if len(line) > 1000 or not _secret_hint(line):
                    continue
                for secret in scan_line(line):
                    value = secret.secret_value or ""
                    if len(value) < 6 or value in PLACEHOLDERS or value not in line:
                        continue
                    kind = "password" if secret.type == "Secret Keyword" else "api_key"
                    placeholder = "<PASSWORD>" if kind == "password" else "<API_KEY>"
                    line = line.replace(value, placeholder)
                    counts[kind] = counts.get(kind, 0) + 1
                    changed = True
                lines[i] = line
        return "\n".join(lines) if changed else text


class RedactStep(CurateStep):
    name = "redact"

    def __init__(
        self,
        emails: bool = True,
        ip_addresses: bool = True,
        secrets: bool = True,
        entropy: bool = False,
        **kw,
    ):
        super().__init__(**kw)
        self.redactor = Redactor(emails, ip_addresses, secrets, entropy)

    def run(self, data, rank: int = 0, world_size: int = 1):
        for doc in data:
            n = len(doc.text.encode("utf-8"))
            self.tally.seen(n)
            with self.track_time():
                text, counts = self.redactor.redact(doc.text)
            if counts:
                doc.text = text
                doc.metadata["redactions"] = counts
                self.tally.count("documents_redacted")
                for kind, c in counts.items():
                    self.tally.count(kind, c)
                    self.stat_update(f"redacted_{kind}", value=c)
            self.tally.kept(len(doc.text.encode("utf-8")))
            yield doc
        self.save_tally(rank)
