"""Catalogue records: redis-om HashModels, read and written by primary key only.

redis-om keeps its connection and key prefix in each model class' Meta and allows one
indexed model per inheritance tree, so models are bound per (kind, site) and cached.
There are no Redis modules, hence no `find()`: listing goes through id sets kept next
to the records (storage.catalogue). Above `storage/`, records are plain dicts; the
models here are their stored schema (`fields()` validates a dict against it).

Keys: sites `<prefix>:site:<id>` (plus the id set `<prefix>:site:_ids`); segments,
placements, content and campaigns `<prefix>:{<site>}:<kind>:<id>`, so a site's whole
catalogue shares one hash slot; triggers `<prefix>:trigger:{<site>}:<id>`.
"""

from __future__ import annotations

from typing import Any

from aredis_om import Field, HashModel
from aredis_om import NotFoundError as OmNotFound

from segserver.storage.client import Client
from segserver.storage.errors import wrapped

ITEM_KINDS = ("placement", "content", "campaign")


def _site_model(db: Client, prefix: str) -> Any:
    class SiteRecord(HashModel, index=True):
        id: str = Field(primary_key=True)
        name: str
        site_key: str
        server_key_hash: str = ""  # sha256 hex of the secret server key ("": none yet)
        origins: str = "[]"  # JSON list
        profile_schema: str = "{}"  # JSON: segserver.profile.schema.Schema
        options: str = "{}"  # JSON: per-site options
        created_at: float
        updated_at: float
        version: int = 1

        class Meta:
            global_key_prefix = prefix
            model_key_prefix = "site"
            database = db

    return SiteRecord


def _segment_model(db: Client, prefix: str, site: str) -> Any:
    class SegmentRecord(HashModel, index=True):
        id: str = Field(primary_key=True)
        name: str
        description: str = ""
        tags: str = "[]"  # JSON list
        type: str = "dynamic"  # dynamic | static
        status: str = "draft"  # draft | active | archived
        priority: int = 0
        rule: str = "{}"  # JSON
        slot: int  # stable bit position in stored membership
        salt: str = ""  # bucket salt
        prebuilt: int = 0
        created_at: float
        updated_at: float
        version: int = 1

        class Meta:
            global_key_prefix = prefix
            model_key_prefix = f"{{{site}}}:segment"
            database = db

    return SegmentRecord


def _item_model(db: Client, prefix: str, site: str, kind: str) -> Any:
    """A JSON catalogue item (placement, content, campaign) of one site."""

    class ItemRecord(HashModel, index=True):
        id: str = Field(primary_key=True)
        data: str  # JSON, validated by segserver.catalogue.campaigns
        created_at: float
        updated_at: float
        version: int = 1

        class Meta:
            global_key_prefix = prefix
            model_key_prefix = f"{{{site}}}:{kind}"
            database = db

    return ItemRecord


def _trigger_model(db: Client, prefix: str) -> Any:
    class TriggerRecord(HashModel, index=True):
        ref: str = Field(primary_key=True)  # "{<site>}:<id>"
        id: str
        site: str
        url: str
        segments: str = "[]"  # JSON list of segment ids; empty: all
        changes: str = "both"
        secret: str
        active: bool = True
        created_at: float
        updated_at: float
        version: int = 1

        class Meta:
            global_key_prefix = prefix
            model_key_prefix = "trigger"
            database = db

    return TriggerRecord


class Records:
    """Every catalogue record kind: `site`, `segment`, `placement`, `content`,
    `campaign`, `trigger`. Site-scoped kinds take `site=`."""

    def __init__(self, db: Client, prefix: str) -> None:
        self.db = db
        self.prefix = prefix
        self._global = {"site": _site_model(db, prefix), "trigger": _trigger_model(db, prefix)}
        self._scoped: dict[tuple[str, str], Any] = {}

    def model(self, kind: str, site: str | None = None) -> Any:
        if kind in self._global:
            return self._global[kind]
        if site is None:
            raise ValueError(f"{kind} records belong to a site")
        model = self._scoped.get((kind, site))
        if model is None:
            if kind == "segment":
                model = _segment_model(self.db, self.prefix, site)
            elif kind in ITEM_KINDS:
                model = _item_model(self.db, self.prefix, site, kind)
            else:
                raise ValueError(f"unknown record kind {kind!r}")
            self._scoped[(kind, site)] = model
        return model

    async def get(self, kind: str, pk: str, site: str | None = None) -> dict[str, Any] | None:
        """The record's fields, or None if there is none."""
        model = self.model(kind, site)
        with wrapped(f"reading {kind} {pk!r}"):
            try:
                rec = await model.get(pk)
            except OmNotFound:
                return None
        data: dict[str, Any] = rec.model_dump()
        return data

    def fields(self, kind: str, data: dict[str, Any], site: str | None = None) -> dict[str, str]:
        """`data` checked against the record's schema, as redis-om stores it (str, int,
        float and bool fields only: the models have no others)."""
        rec = self.model(kind, site)(**data)
        return {k: str(v) for k, v in rec.model_dump().items() if v is not None}

    async def save(
        self, kind: str, data: dict[str, Any], site: str | None = None, *, new: bool = False
    ) -> bool:
        """Write the record; with `new`, only if it does not exist (False if it did)."""
        rec = self.model(kind, site)(**data)
        with wrapped(f"writing a {kind}"):
            return await rec.save(nx=new) is not None

    async def delete(self, kind: str, pk: str, site: str | None = None) -> None:
        with wrapped(f"deleting {kind} {pk!r}"):
            await self.model(kind, site).delete(pk)

    def key(self, kind: str, pk: str, site: str | None = None) -> str:
        """The Redis key of a record."""
        key: str = self.model(kind, site).make_primary_key(pk)
        return key

    # Sites are listed from an id set: listing never SCANs the keyspace.
    def _site_ids_key(self) -> str:
        key: str = self._global["site"].make_key("_ids")
        return key

    async def add_site_id(self, site: str) -> None:
        with wrapped("indexing a site"):
            await self.db.sadd(self._site_ids_key(), site)

    async def site_ids(self) -> list[str]:
        with wrapped("listing sites"):
            return sorted(await self.db.smembers(self._site_ids_key()))
