"""Iterative alignment: rounds of sample -> label -> filter -> preference training -> evaluate (``rounds``), kept on
disk stage by stage (``store``), with the proxy reward against the lab oracle watched for over-optimisation
(``overopt``). Online DPO, the same idea inside one training run, is ``mmalign.train.online``."""
