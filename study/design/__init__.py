"""What a study is: the factors (`factors`), the designs (`designs`), a study's spec and identity
(`spec`), the config schema and its checks (`config`) and what each design point costs (`cost`)."""
