"""Who is who and what they may do: identities, roles, limits and upload ownership."""
