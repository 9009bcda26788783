"""cnncalc: exact shapes, parameters, multiply-adds and receptive fields of convolutional networks.

>>> import cnncalc
>>> report = cnncalc.analyse(cnncalc.load("lenet5"))
>>> report.totals.params, report.totals.macs
(1256080, 6522000)
"""
from .analysis import DType, Report, analyse
from .errors import SpecError
from .source import Limits
from .spec import Network, Node, builtin_names, load, parse, parse_shape

__version__ = "0.1.0"
__all__ = ["DType", "Limits", "Network", "Node", "Report", "SpecError", "analyse", "builtin_names", "load",
           "parse", "parse_shape", "__version__"]
