"""The campaign's fixtures (tests/integration/faults/campaign.py), for every test here."""

from tests.integration.faults.campaign import bot, campaign_index, chat, deps  # noqa: F401
