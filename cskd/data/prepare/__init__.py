"""`cskd prepare`: the paper's data sets from their publishers' files into the image-folder layout
`cskd train` reads, checked and recorded (prepared.json)."""
