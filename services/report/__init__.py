"""The HTML report of one model: collect (topics, registry, shadow state), render (pure)."""
