"""Where a dead letter goes at run time: the fallback chain (the topic, else the table in the
batch's transaction, else the local spool), the table and the spool that hold them, and
their exact bytes as stored. Operating them (``weir dlq``) is :mod:`processor.commands.dlq`.
"""
