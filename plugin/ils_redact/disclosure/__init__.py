"""The disclosure workflow: requests, approval, export, audit, forms.

The rules of the workflow live in the database (functions of the layer's schema), so a
member of staff with psql gets the same refusals as one using this CLI.  This package is
the client side: it validates input early, shows people what they are about to do, writes
the exported bytes and their manifest, verifies the audit chain and prints the forms.
"""
