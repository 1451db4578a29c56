"""redis-om HashModels of the catalogue, bound to a connection and key prefix.

redis-om keeps its connection and prefix in each model class' Meta, and allows one
indexed model per inheritance tree, so models are defined per binding (one per
process and key prefix; tests use one prefix each). Only primary-key access is used
(get / save / delete / all_pks): there are no Redis modules, hence no find().
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aredis_om import Field, HashModel


@dataclass(frozen=True)
class Models:
    site: Any  # type[SiteRecord]; redis-om's metaclass defeats static typing


def bind_models(db: Any, prefix: str) -> Models:
    """Model classes whose keys are `<prefix>:<model>:<pk>`, saved through `db`."""

    class SiteRecord(HashModel, index=True):
        id: str = Field(primary_key=True)
        name: str
        site_key: str
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

    return Models(site=SiteRecord)


@dataclass(frozen=True)
class SiteModels:
    segment: Any  # type[SegmentRecord]


def bind_site_models(db: Any, prefix: str, site: str) -> SiteModels:
    """Models of one site's catalogue; keys `<prefix>:{<site>}:<kind>:<id>`, so a site's
    whole catalogue shares one hash slot (transactions work on a cluster)."""

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

    return SiteModels(segment=SegmentRecord)


def bind_item_model(db: Any, prefix: str, site: str, kind: str) -> Any:
    """A JSON catalogue item (placement, content, campaign) of one site: keys
    `<prefix>:{<site>}:<kind>:<id>`, in the site's hash slot."""

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
