"""`labloop dashboard`: a live page over one campaign's journal (see :mod:`.app`)."""

from labloop.orchestrator.dashboard.app import CampaignSource, create_app

__all__ = ["CampaignSource", "create_app"]
