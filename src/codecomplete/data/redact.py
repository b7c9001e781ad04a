"""The curation step that scrubs secrets and PII (data/redactor.py holds what it finds and how)."""

from __future__ import annotations

from codecomplete.data.document import utf8_len
from codecomplete.data.redactor import Redactor
from codecomplete.data.steps import CurateStep

__all__ = ["RedactStep", "Redactor"]


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
            n = utf8_len(doc.text)
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
            self.tally.kept(utf8_len(doc.text))
            yield doc
        self.save_tally(rank)
