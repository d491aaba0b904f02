//! The mapping engine: packs, routes, templates, jq transforms and step execution.
