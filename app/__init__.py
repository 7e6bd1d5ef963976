"""byline: the backend of a news aggregator that keeps its 24-hour takedown promise."""
