"""The config tree: where conf/ is, its resolvers, composition, the settings schema and checks."""
