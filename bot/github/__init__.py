"""The GitHub front ends: the API client, the review poster and `asyncguard review`."""
