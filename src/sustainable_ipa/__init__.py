"""Sustainable-IPA: energy- and carbon-aware inference pipeline adaptation experiments."""

from sustainable_ipa.errors import UserError

__all__ = ["UserError"]
