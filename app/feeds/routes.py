"""Subscriptions to publishers' feeds (scope `ingest` or `admin`)."""

from fastapi import APIRouter

router = APIRouter(prefix="/v1", tags=["feeds"])
