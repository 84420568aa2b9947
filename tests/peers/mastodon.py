"""Fixture for the local Mastodon peer (../shared/peers/mastodon)."""
