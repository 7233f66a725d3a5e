from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("logs", "0001_initial")]
    operations = [migrations.RemoveField("logrecord", "source")]
