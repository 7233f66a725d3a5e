from django.db import migrations


class Migration(migrations.Migration):
    # deploy only after every host runs a release that no longer uses it
    contract = True
    dependencies = [("logs", "0001_initial")]
    operations = [migrations.RemoveField("logrecord", "source")]
