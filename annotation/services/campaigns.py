"""Creating a campaign from the product (page and API): the settings a team sets first.

The rest of a campaign's settings (escalation rules, quarantine, qualification, aspects, the
loop's tuning) keep their defaults and stay in the Django admin, where each is documented.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from annotation.models import Campaign
from core.errors import BadRequest, Conflict

# What a new campaign may be given; everything else starts at its default.
CREATE_FIELDS = (
    "name",
    "guidelines",
    "scale",
    "item_kind",
    "annotators_per_pair",
    "open_to_all",
    "gold_share",
    "retest_share",
    "round_size",
    "auto_retrain",
    "consensus_rule",
)


class CampaignInvalid(BadRequest):
    code = "invalid_campaign"


class CampaignNameTaken(Conflict):
    code = "campaign_exists"


def campaign_create(*, created_by: User | None, **fields: Any) -> Campaign:
    """A new campaign with these settings (``CREATE_FIELDS``), checked before it is saved:
    CampaignInvalid names the first wrong field, CampaignNameTaken a name in use."""
    unknown = sorted(set(fields) - set(CREATE_FIELDS))
    if unknown:
        raise CampaignInvalid(f"unknown campaign setting {', '.join(unknown)}")
    name = fields["name"] = str(fields.get("name") or "").strip()
    if name and Campaign.objects.filter(name=name).exists():
        raise CampaignNameTaken(f"a campaign named {name!r} already exists")
    campaign = Campaign(created_by=created_by, **fields)
    try:
        campaign.full_clean(validate_unique=False)  # the name: above, and the constraint below
    except ValidationError as error:
        field, messages = next(iter(sorted(error.message_dict.items())))
        raise CampaignInvalid(f"{field}: {' '.join(messages)}") from error
    try:
        with transaction.atomic():
            campaign.save()
    except IntegrityError as error:  # created by someone else since the check
        raise CampaignNameTaken(f"a campaign named {name!r} already exists") from error
    return campaign
