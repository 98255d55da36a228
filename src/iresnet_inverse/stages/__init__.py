"""One module per kind of workflow rule: each is the only home of what its rule runs, and the
command line's subcommand is a thin call into it. Stages import the primitives below them
(operators, nets, data, objectives, metrics, TV, Bayes, artifacts), never the other way round."""
