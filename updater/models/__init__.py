"""The values every layer speaks, with their pure rules: image references, outcomes, semantic
versions and tag policies, the fleet's decision."""
