"""The command line (`cskd COMMAND`): the verbs in cskd.cli.main, train's options in
cskd.cli.train_options, `cskd dashboard` in cskd.cli.dashboard."""
