"""Readers for the on-disk formats, the in-memory ImageSet, and the one-class protocol."""

from reconad.data.imageset import DataError, ImageSet

__all__ = ["DataError", "ImageSet"]
