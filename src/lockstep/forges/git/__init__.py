"""The git forge: any git remote, through the git command line."""
