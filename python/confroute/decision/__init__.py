"""One decision path for every caller: ``path`` (Query, Need, Evidence, Decision, Policy;
decide, decide_many, decide_all), ``edge`` (the supplier of the edge's answer, samples and
hidden state), ``policies`` (the online ones), ``names`` (the router-string grammar and the
trained-router adapter) and ``answer`` (the cloud's messages and the edge's usage)."""
