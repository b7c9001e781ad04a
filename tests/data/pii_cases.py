"""A labelled set for the redactor: secrets and PII of every kind in every syntactic position
(positives), and code that looks like them but is not (negatives), scored per kind.

    PYTHONPATH=src python tests/data/pii_cases.py      # the precision/recall table of docs/curate.md

Recall of a kind: the share of its planted values that are gone from the redacted text. Precision of
a kind: the share of its redactions that removed a planted value (a redaction in a negative, or more
redactions in a case than it has values, is a false positive).
"""

from __future__ import annotations

import base64
import json
import random
import string
from dataclasses import dataclass

KINDS = ("private_key", "api_key", "jwt", "webhook_url", "password", "secret", "email", "ip_address")


@dataclass
class Case:
    text: str
    values: list[str]  # the secrets planted in it (empty: a negative)
    kind: str | None  # the kind its values are (None: a negative)
    where: str


def _rand(rng: random.Random, n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def _b64(obj: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")


def values_of_kind(rng: random.Random) -> dict[str, list[str]]:
    url = string.ascii_letters + string.digits + "_-"
    jwts = [
        f"{_b64({'alg': 'HS256', 'typ': 'JWT'})}.{_b64({'sub': str(rng.randrange(10**9)), 'name': 'Jo'})}."
        + _rand(rng, 43, url)
        for _ in range(3)
    ] + [f"{_b64({'alg': 'RS256', 'kid': _rand(rng, 8)})}.{_b64({'iss': 'auth', 'exp': 1700000000})}."
         + _rand(rng, 86, url)]  # fmt: skip
    pem = ("-----BEGIN RSA PRIVATE KEY-----\\n" + _rand(rng, 64, string.ascii_letters + "+/") + "\\n"
           + _rand(rng, 40) + "==\\n-----END RSA PRIVATE KEY-----")  # fmt: skip
    pem_real = ("-----BEGIN OPENSSH PRIVATE KEY-----\n" + _rand(rng, 70) + "\n" + _rand(rng, 30)
                + "\n-----END OPENSSH PRIVATE KEY-----")  # fmt: skip
    return {
        "private_key": [pem, pem_real],
        "api_key": [
            "sk-proj-"
            + _rand(rng, 40, url)
            + "T3BlbkFJ"
            + _rand(rng, 40, url),  # current OpenAI project keys
            "sk-proj-" + _rand(rng, 20, url) + "_-" + _rand(rng, 70, url),
            "sk-svcacct-" + _rand(rng, 60, url),
            "sk-" + _rand(rng, 48),  # legacy OpenAI
            "sk-ant-api03-" + _rand(rng, 80, url),
            "AKIA" + _rand(rng, 16, string.ascii_uppercase + string.digits),
            "ghp_" + _rand(rng, 36),
            "github_pat_" + _rand(rng, 22) + "_" + _rand(rng, 59),
            "glpat-" + _rand(rng, 20, url),
            "xoxb-" + "-".join(_rand(rng, 12, string.digits) for _ in range(2)) + "-" + _rand(rng, 24),
            "AIza" + _rand(rng, 35, url),
            "sk_live_" + _rand(rng, 24),
            "hf_" + _rand(rng, 34),
            "npm_" + _rand(rng, 36),
            "SG." + _rand(rng, 22, url) + "." + _rand(rng, 43, url),
            "SK" + _rand(rng, 32, "0123456789abcdef"),  # Twilio
            _rand(rng, 32, "0123456789abcdef") + "-us14",  # Mailchimp
            str(rng.randrange(10**8, 10**9)) + ":AA" + _rand(rng, 33, url),  # Telegram bot
        ],
        "jwt": jwts,
        "webhook_url": [
            f"https://hooks.slack.com/services/T{_rand(rng, 8, string.ascii_uppercase)}/B{_rand(rng, 10, string.ascii_uppercase)}/{_rand(rng, 24)}",
            f"https://discord.com/api/webhooks/{rng.randrange(10**17, 10**18)}/{_rand(rng, 68, url)}",
            f"https://contoso.webhook.office.com/webhookb2/{_rand(rng, 8)}-{_rand(rng, 4)}@{_rand(rng, 8)}/IncomingWebhook/{_rand(rng, 32)}",
            f"https://chat.googleapis.com/v1/spaces/AAAA{_rand(rng, 7)}/messages?key={_rand(rng, 39, url)}&token={_rand(rng, 43, url)}",
            f"https://hooks.zapier.com/hooks/catch/{rng.randrange(10**6, 10**7)}/{_rand(rng, 6).lower()}/",
        ],
        "password": [
            "hunter22",
            "testPass",
            "correct-horse-battery-9",
            "S3cr3t!Pass",
            "p@ssw0rd2024",
            "Tr0ub4dor&3",
            "MyS3cretPassw0rd",
        ],  # fmt: skip
        "secret": [
            _rand(rng, 32, "0123456789abcdef"),
            _rand(rng, 40),
            "django-insecure-" + _rand(rng, 30, url),
            _rand(rng, 24, url) + "9",
            _rand(rng, 16) + "/" + _rand(rng, 12),
        ],  # fmt: skip
        "email": [
            "jane.doe@shop.co.id",
            "b.santos@empresa.com.br",
            "ops@acme-corp.de",
            "x9_dev+ci@mail.example-inc.io",
            "hans.muller@uni-heidelberg.ac.de",
            "k.tanaka@lab.ac.jp",
            "li.wei@corp.cn",
            "curator@louvre.museum",
            "studio@jo.photography",
            "admin@bank.xn--p1ai",
            "someone@company.technology",
            "m.rossi@posta.it",
            "dev@startup.ai",
            "a.b@sub.domain.gov.uk",
        ],  # fmt: skip
        "ip_address": [
            "93.184.216.34",
            "8.8.4.4",
            "151.101.1.69",
            "52.95.110.1",
            "2a00:1450:4001:82b::200e",
            "2606:4700:4700::1111",
            "2001:4860:4860:0:0:0:0:8888",
            "2620:fe::fe",
            "2a03:2880:f12f:83:face:b00c:0:25de",
            "::ffff:93.184.216.34",
        ],  # fmt: skip
    }


# Where a value sits. {N}: a name fitting the kind, {n}: the same in lower case, {v}: the value.
POSITIONS = {
    "assignment": '{N} = "{v}"\n',
    "annotated": '{n}: str = "{v}"\n',
    "keyword_arg": 'client = Client(host="db.internal", {n}="{v}", timeout=3)\n',
    "setdefault_arg": 'os.environ.setdefault("{N}", "{v}")\n',
    "getenv_default": 'value = os.getenv("{N}", "{v}")\n',
    "dict_literal": 'settings = {{"debug": True, "{n}": "{v}"}}\n',
    "comparison": 'if {n} == "{v}":\n    login()\n',
    "comment_export": "# export {N}={v}\nrun()\n",
    "comment_prose": "def f():\n    # {n} is {v} on staging\n    return 1\n",
    "docstring": 'def connect():\n    """Connect.\n\n    Example::\n\n        {n}: {v}\n    """\n',
    "yaml_string": 'CONFIG = """\nservice:\n  url: https://api.service.io\n  {n}: {v}\n"""\n',
    "json_string": 'payload = \'{{"{n}": "{v}", "retries": 3}}\'\n',
    "env_string": 'ENV_FILE = "DEBUG=1\\n{N}={v}\\nWORKERS=4\\n"\n',
    "fstring_query": 'url = f"https://api.service.io/v1/items?{n}={v}&page={{page}}"\n',
}
# A password also sits in a URL's credentials (the user name and the rest of the URL stay).
URL_POSITIONS = {"url_credentials": 'DSN = "postgresql://app_user:{v}@db.internal:5432/app"\n'}
# Kinds with a shape of their own are also found with no telling name near them.
SHAPED_POSITIONS = {
    "bare_call_arg": 'send("{v}")\n',
    "positional_arg": 'connect("db.internal", 5432, "{v}")\n',
    "prose_docstring": '"""Written by the team; ask {v} about it."""\n',
    "list_item": 'VALUES = [\n    "first",\n    "{v}",\n]\n',
    "markdown_comment": "# See `{v}` (rotated monthly).\n",
}
NAMES = {
    "private_key": ["PRIVATE_KEY", "SSH_PRIVATE_KEY"],
    "api_key": ["OPENAI_API_KEY", "KEY", "GITHUB_TOKEN", "SERVICE_KEY"],
    "jwt": ["ACCESS_TOKEN", "JWT", "ID_TOKEN"],
    "webhook_url": ["SLACK_WEBHOOK_URL", "WEBHOOK", "NOTIFY_URL"],
    "password": ["PASSWORD", "DB_PASSWORD", "SMTP_PASSWD", "ADMIN_PWD", "REDIS_PASSWORD"],
    "secret": [
        "SECRET_KEY",
        "CLIENT_SECRET",
        "API_TOKEN",
        "AUTH_TOKEN",
        "SLACK_SIGNING_SECRET",
        "STRIPE_API_KEY",
    ],
    "email": ["MAINTAINER", "CONTACT_EMAIL", "AUTHOR"],
    "ip_address": ["UPSTREAM_HOST", "SERVER_IP", "DNS"],
}
# Names a PEM block or a URL cannot go after unquoted (a value with newlines or `://` is not bare).
_MULTILINE_OK = {"assignment", "annotated", "keyword_arg", "setdefault_arg", "getenv_default", "dict_literal",
                 "bare_call_arg", "positional_arg", "list_item", "comparison"}  # fmt: skip


def positives(seed: int = 0) -> list[Case]:
    rng = random.Random(seed)
    cases = []
    for kind, values in values_of_kind(rng).items():
        positions = dict(POSITIONS)
        if kind not in ("password", "secret"):
            positions.update(SHAPED_POSITIONS)
        if kind == "password":
            positions.update(URL_POSITIONS)
        for where, template in positions.items():
            if kind == "private_key" and where not in _MULTILINE_OK:
                continue
            for i, value in enumerate(values):
                name = NAMES[kind][i % len(NAMES[kind])]
                text = template.format(N=name, n=name.lower(), v=value)
                cases.append(Case(text, [value], kind, where))
    return cases


NEGATIVES = [
    # names of other things, code values, templates, dummies
    'token_type = "bearer"\n', 'password_field = "password"\n', 'TOKEN_ENV = "GITHUB_TOKEN"\n',
    'API_KEY_HEADER = "X-Api-Key"\n', 'secret = os.environ["SECRET"]\n', 'password = getpass.getpass("Password: ")\n',
    'token = self._tokens[0]\n', 'api_key = settings.API_KEY\n', 'password = "${DB_PASSWORD}"\n',
    'token = "<your-token-here>"\n', 'password = "changeme"\n', 'secret = "xxxxxxxxxxxx"\n',
    'PASSWORD_MIN_LENGTH = 12\n', 'password_hash = "pbkdf2_sha256"\n', 'tokenizer = "gpt2-medium"\n',
    'tokens = tokenize.generate_tokens(readline)\n', 'def f(password):\n    pass\n',
    'parser.add_argument("--password", help="the password to use")\n', 'secret_name = "prod/db/creds"\n',
    'if token.type == "NAME":\n    pass\n', 'key = "user:profile:42"\n', 'cache_key = f"{prefix}:{user_id}"\n',
    'token_url = "https://oauth2.googleapis.com/token"\n', 'auth = ("user", password)\n',
    'CSRF_COOKIE_NAME = "csrftoken"\n', 'password = kwargs.pop("password", None)\n', 'TOKEN_PATTERN = r"\\w+"\n',
    'credentials = service_account.Credentials.from_service_account_file(path)\n', 'secret_key = secrets.token_hex(32)\n',
    'api_key = os.environ.get("OPENAI_API_KEY")\n', 'token = "{{ token }}"\n', 'PASSWORD = "********"\n',
    'access_key = None\n', 'private_key = load_pem_private_key(data, password=None)\n', '# token = ...\n',
    'sk_learn_version = "1.3.2"\n', 'import sklearn  # sk-learn is not a key\n', 'sort_key = "sk-order-by-name"\n',
    # e-mail look-alikes
    'y = x@self.weight  # matrix product\n', "z = a@b.T\n", 'out = q@k.transpose(-2, -1)\n',
    "@property\ndef name(self):\n    return self._name\n", "@app.route('/users/<id>')\ndef user(id): ...\n",
    'ICON = "static/icon@2x.png"\n', 'LOGO = "img/logo@3x.webp"\n', 'url = "git@github.com:owner/repo.git"\n',
    '"""Contact: admin@example.com or user@example.org."""\n', 'EMAIL = "someone@project.test"\n',
    'pip install "pkg @ git+https://github.com/owner/repo"\n', 'image = "python@sha256:0123abcd"\n',
    'deps = ["left-pad@1.3.0", "react@18.2.0"]\n', 'mail = "%(user)s@%(host)s"\n', 'npm_scope = "@types/node"\n',
    'h = w@np.linalg.inv(m)\n',
    # addresses to keep: private, loopback, link-local, documentation, multicast, versions, slices, clocks
    'HOST = "192.168.1.10"\n', 'LOCAL = "127.0.0.1"\n', 'ANY = "0.0.0.0"\n', 'DOC = "203.0.113.7"\n',
    'V6_LOCAL = "::1"\n', 'V6_LINK = "fe80::1ff:fe23:4567:890a"\n', 'V6_DOC = "2001:db8::8a2e:370:7334"\n',
    'V6_ULA = "fd12:3456:789a:1::1"\n', 'MCAST = "224.0.0.251"\n', '__version__ = "10.2.0.1"\n',
    'version = "1.2.3.4"\n', 'DATE = "01.02.03.04"\n', "evens = x[1::2]\n", 'T = "12:30:45"\n',
    'MAC = "00:1a:2b:3c:4d:5e"\n', "s = a[::-1]\n", 'std::vector<int> v;\n', 'OID = "1.3.6.1.4.1.311"\n',
    'SUBNET = "10.0.0.0/8"\n', 'ratio = "16:9:4"\n', "# RFC 4291 2.5.5.2\n", 'NET = "1.1.0.0/16"\n',
    'ADDR = "1.2.3.4"  # the usual dummy\n', 'assert parse("1.2.3") == "1.2.3.0"\n',
    # JWT / webhook / key look-alikes
    'HEADER = "eyJhbGciOiJIUzI1NiJ9"  # a JWT header alone is public\n', 'URL = "https://hooks.slack.com/"\n',
    'WEBHOOK_DOCS = "https://api.slack.com/messaging/webhooks"\n', 'DISCORD = "https://discord.com/developers"\n',
    'SHA = "0123456789abcdef0123456789abcdef01234567"\n', 'UUID = "123e4567-e89b-12d3-a456-426614174000"\n',
    'b64 = "SGVsbG8sIFdvcmxkIQ=="\n', 'key_id = "AKIAEXAMPLE"\n', 'PREFIX = "ghp_"\n',
    'ENDPOINT = "https://api.openai.com/v1/chat/completions"\n', 'model = "sk-large-v2"\n',
    # seen on PyPI code: special tokens, pagination cursors, token counts, OIDs, section numbers
    'tok = Tokenizer(mask_token="[MASK]", pad_token="[PAD]")\n', 'req = List(page_token="CiAKGjBpNDd2Nj")\n',
    'usage = {"max_tokens_per_1_minute": "150000000"}\n', 'r = Resp(continuation_token="AbC123xYz")\n',
    'output_tokens: "12345678"\n', "id_ce = univ.ObjectIdentifier('2.5.29.29')\n",
    "OIDS = {'1.3.101.112': 'ed25519'}\n", "# see sections `5.3.2.1`_ and `5.5.1.1`_\n",

]  # fmt: skip


def negatives() -> list[Case]:
    return [Case(t, [], None, "negative") for t in NEGATIVES]


def _gone(value: str, out: str) -> bool:
    """The value is gone, and so is each half of it (a kept JWT signature or password tail is a leak)."""
    half = len(value) // 2
    return value not in out and (len(value) < 12 or (value[:half] not in out and value[half:] not in out))


def score(redact) -> dict[str, dict[str, float]]:
    """Per kind: planted values, values found, redactions, false positives, recall, precision."""
    rows = {k: {"values": 0, "found": 0, "redactions": 0, "false": 0} for k in KINDS}
    misses: list[tuple[str, str]] = []
    for case in positives() + negatives():
        out, counts = redact(case.text)
        if case.kind is not None:
            row = rows[case.kind]
            row["values"] += len(case.values)
            found = sum(_gone(v, out) for v in case.values)
            row["found"] += found
            if found < len(case.values):
                misses.append((case.kind, case.text))
        budget = sum(_gone(v, out) for v in case.values)
        for kind, c in sorted(counts.items(), key=lambda kv: kv[0] != case.kind):
            rows[kind]["redactions"] += c
            true = min(c, budget)
            budget -= true
            rows[kind]["false"] += c - true
    for row in rows.values():
        row["recall"] = row["found"] / row["values"] if row["values"] else 1.0
        row["precision"] = 1 - row["false"] / row["redactions"] if row["redactions"] else 1.0
    rows["_misses"] = misses  # type: ignore[assignment]
    return rows


def main() -> None:
    from codecomplete.data.redact import Redactor

    rows = score(Redactor().redact)
    misses = rows.pop("_misses")
    n_pos, n_neg = len(positives()), len(negatives())
    print(f"{n_pos} positive cases ({len(POSITIONS)} positions, + {len(SHAPED_POSITIONS)} for shaped kinds), "
          f"{n_neg} negatives\n")  # fmt: skip
    print("| kind | values | recall | redactions | false positives | precision |\n|---|---|---|---|---|---|")
    for kind, r in rows.items():
        print(f"| `{kind}` | {r['values']} | {r['recall']:.3f} | {r['redactions']} | {r['false']} | "
              f"{r['precision']:.3f} |")  # fmt: skip
    for kind, text in misses[:20]:
        print("MISS", kind, repr(text[:160]))


if __name__ == "__main__":
    main()
