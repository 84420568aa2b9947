"""Fixture for the local Bluesky PDS peer (../shared/peers/bluesky)."""
