"""labelbot Slack side: the bolt app, its handlers, and a local Slack stand-in for tests."""
