"""From a login name to an account: names, the Router, policy and the realm."""
