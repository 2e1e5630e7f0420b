"""Lava processes of the snnc backend and their fixed-point process models.

Lava finds a Process's models by executing every .py file in the Process's folder, so this
package holds only process definitions (process.py) and models (models.py): no scripts.
"""
