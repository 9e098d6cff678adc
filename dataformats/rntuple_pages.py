"""Page checksums of RNTuple inputs: ROOT writes an xxhash3-64 checksum after each page and verifies it on read;
uproot 5 does not, so a damaged page would be read as valid data. :class:`PageChecksums` checks the pages of
the columns a job reads, cluster by cluster, before their values are used (one-line SchemaError naming the file,
the field and the entries)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from dataformats.schema import SchemaError

#: bytes of the checksum that follows a page's payload (little-endian xxh3_64 of the payload)
CHECKSUM_BYTES = 8


class PageChecksums:
    """The pages of the fields ``names`` (top-level field names) of an open RNTuple, checked once per cluster.

    ``source``: the file and tree named in messages. Pages written without a checksum (uproot writes none) and
    pages behind other locator kinds (object stores) are not checked."""

    def __init__(self, ntuple: Any, names: Iterable[str], source: str) -> None:
        self.source = source
        self._ntuple = ntuple
        records = ntuple.field_records
        wanted = {name.partition(".")[0] for name in names}  # (a record field X.f: the columns of field X)

        def top(i: int) -> int:
            for _ in range(len(records)):  # a top-level field is its own parent
                parent = int(records[i].parent_field_id)
                if parent == i:
                    break
                i = parent
            return i

        field_of_column = [int(c.field_id) for c in ntuple.column_records]
        self._columns = {
            col: str(records[top(f)].field_name)
            for col, f in enumerate(field_of_column)
            if f < len(records) and str(records[top(f)].field_name) in wanted
        }
        self._clusters = [(int(c.num_first_entry), int(c.num_entries)) for c in ntuple.cluster_summaries]
        self._checked: set[int] = set()

    def check(self, entry_start: int, entry_stop: int) -> None:
        """Check the pages of every cluster holding entries ``entry_start:entry_stop`` not checked yet."""
        for index, (first, n) in enumerate(self._clusters):
            if index in self._checked or first >= entry_stop or first + n <= entry_start:
                continue
            self._check_cluster(index, first, n)
            self._checked.add(index)

    def _check_cluster(self, index: int, first: int, n: int) -> None:
        import xxhash

        links = self._ntuple.page_link_list[index]
        chunk_source = self._ntuple.file.source
        for col, name in self._columns.items():
            if col >= len(links):
                continue
            for page in links[col].pages:
                loc = page.locator
                if not page.has_checksum or getattr(loc, "type", 0) not in (0, None):  # (type: non-standard only)
                    continue
                start = int(loc.offset)
                size = int(loc.num_bytes)
                raw = bytes(chunk_source.chunk(start, start + size + CHECKSUM_BYTES).raw_data)
                stored = int.from_bytes(raw[size:], "little")
                if len(raw) != size + CHECKSUM_BYTES or xxhash.xxh3_64_intdigest(raw[:size]) != stored:
                    raise SchemaError(
                        f"{self.source}: damaged RNTuple page of field '{name}' (its checksum does not match, at "
                        f"byte {start}) in the cluster of entries {first}-{first + n - 1}; the file is corrupt"
                    )
