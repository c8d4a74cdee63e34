"""Source text of user model factories that tests write into importable modules."""

ONE_HOT_SOURCE = '''
class OneHot(nn.Module):
    """A user's model whose input width follows the vocabularies (it cannot be grown)."""

    def __init__(self, schema):
        super().__init__()
        self.cards = schema.cardinalities
        self.head = nn.Linear(schema.n_numeric_inputs + sum(self.cards), 1)

    def forward(self, numeric, categorical):
        parts = [numeric] + [nn.functional.one_hot(categorical[:, j], c).float()
                             for j, c in enumerate(self.cards)]
        return self.head(torch.cat(parts, dim=1)).squeeze(1)


def one_hot(schema):
    return OneHot(schema)
'''
"""``one_hot``: a factory whose module cannot grow its embeddings (needs ``torch``, ``nn``)."""
