"""The closed-loop benchmark's parts: scenarios (data with a known change), the Feast
definitions of its models, the tally of what the loop produced on its topics, the
acceptance targets, and the harness that runs one scenario through every service."""
