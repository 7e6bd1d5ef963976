"""Feeds: subscriptions to publishers' RSS, Atom and JSON Feed, polled politely and ingested
like the API's articles; and byline's own feeds of live articles."""
